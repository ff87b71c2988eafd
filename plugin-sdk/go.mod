module example.org/backend/plugin-sdk

go 1.26.8
