"""Generated code of the wire protocol (genproto.sh); never edited by hand,
never part of the public API."""
