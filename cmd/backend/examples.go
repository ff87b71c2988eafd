package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// examples are the Example: sections of the commands that do not set
// their own, by command path without "backend ". A test checks that every
// command people run has one.
var examples = map[string]string{
	"serve": `  backend serve
  backend serve --config /etc/backend/config.toml
  BACKEND_LOG_LEVEL=debug BACKEND_LOG_FORMAT=json backend serve --data-dir /tmp/try`,
	"status": `  backend status
  backend status -o json | jq .counters.pubsub_items_requests`,
	"triggers list": `  backend triggers list
  backend triggers list -o json | jq -r '.points[] | select(.handlers != []) | .id'`,
	"events": `  backend events
  backend events -p alice -o json | jq -c 'select(.type == "pubsub.items")'`,
	"migrate status": `  backend migrate status
  sudo -u backend backend migrate status --config /etc/backend/config.toml -o json`,
	"profile create": `  PW=secret backend profile create alice --jid alice@example.org --password-env PW
  backend profile create bob --jid bob@localhost --password-file bob.pw --host 127.0.0.1 --ca-file server.crt --autoconnect`,
	"profile list": `  backend profile list
  backend profile list -o json | jq -r '.profiles[] | select(.state == "connected") | .name'`,
	"profile show":   `  backend profile show alice`,
	"profile delete": `  backend profile delete alice`,
	"profile params": `  backend profile params alice
  backend profile params alice -o json | jq '.params[] | select(.source == "profile")'`,
	"profile get": `  backend profile get alice connection.port
  backend profile get alice cache.enabled -o json | jq .value`,
	"profile set": `  backend profile set alice connection.port 5223
  backend profile set alice cache.analysers '["xep-0277"]'
  backend profile set alice connection.password - < password.txt`,
	"profile connect": `  backend profile connect alice
  backend profile connect alice -o json | jq -r .jid`,
	"profile disconnect": `  backend profile disconnect alice`,
	"pubsub items": `  backend pubsub items -p alice -n urn:xmpp:microblog:0
  backend pubsub items -p alice -s pubsub.example.org -n news -m 5 --xml
  backend pubsub items -p alice -s pubsub.example.org -n news --rsm-max 20 --before ''
  backend pubsub items -p alice -n urn:xmpp:microblog:0 --no-cache -o json`,
	"pubsub publish": `  echo "<entry xmlns='http://www.w3.org/2005/Atom'><title>Hello</title></entry>" |
      backend pubsub publish -p alice -n urn:xmpp:microblog:0 -i hello
  backend pubsub publish -p alice -n urn:example:notes --option pubsub#max_items=max < note.xml`,
	"pubsub retract":     `  backend pubsub retract -p alice -n urn:xmpp:microblog:0 -i hello --notify`,
	"pubsub subscribe":   `  backend pubsub subscribe -p alice -s pubsub.example.org -n news`,
	"pubsub unsubscribe": `  backend pubsub unsubscribe -p alice -s pubsub.example.org -n news`,
	"pubsub subscriptions": `  backend pubsub subscriptions -p alice -s pubsub.example.org
  backend pubsub subscriptions -p alice -s pubsub.example.org -n news -o json`,
	"pubsub node create": `  backend pubsub node create -p alice -n urn:example:notes --option pubsub#max_items=max --option pubsub#access_model=open`,
	"pubsub node delete": `  backend pubsub node delete -p alice -n urn:example:notes`,
	"pubsub node purge":  `  backend pubsub node purge -p alice -n urn:example:notes`,
	"pubsub node config": `  backend pubsub node config -p alice -n urn:example:notes
  backend pubsub node config -p alice -n urn:example:notes --option pubsub#max_items=100`,
	"cache get": `  backend cache get -p alice -n urn:xmpp:microblog:0 -m 10
  backend cache get -p alice -n urn:xmpp:microblog:0 -i hello --xml`,
	"cache sync": `  backend cache sync -p alice -n urn:xmpp:microblog:0 --wait
  backend cache sync -p alice -s pubsub.example.org -n news -o json`,
	"cache status": `  backend cache status
  backend cache status -p alice -o json | jq '.nodes[] | select(.state == "error")'`,
	"cache purge": `  backend cache purge -p alice -n urn:xmpp:microblog:0
  backend cache purge -t blog --updated-before 2026-01-01T00:00:00Z`,
	"cache reset": `  backend cache reset --yes`,
	"cache search": `  backend cache search -p alice -f 'hello -spam'
  backend cache search -t blog -F 'tags overlap ["xmpp"]' --order-by published:desc --limit 10
  backend cache search -F 'author.name ilike élo%' -o json | jq -r '.items[].id'`,
	"plugins list": `  backend plugins list
  backend plugins list -o json | jq -r '.plugins[] | select(.state != "running") | .name'`,
	"plugins restart": `  backend plugins restart microblog`,
	"completion bash": `  source <(backend completion bash)
  backend completion bash > /etc/bash_completion.d/backend`,
	"completion zsh":        `  backend completion zsh > "${fpath[1]}/_backend"`,
	"completion fish":       `  backend completion fish > ~/.config/fish/completions/backend.fish`,
	"completion powershell": `  backend completion powershell | Out-String | Invoke-Expression`,
}

// addExamples sets the Example of every command of root listed in
// examples (cobra's own completion commands included, so it runs after
// cobra added them).
func addExamples(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if ex, ok := examples[path]; ok && c.Example == "" {
			c.Example = ex
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}
