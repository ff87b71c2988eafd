package triggers_test

import (
	"context"
	"fmt"

	"example.org/backend/triggers"
)

// GetItemsRequest and ItemsPage stand for the request and result types of a
// pubsub plugin.
type GetItemsRequest struct {
	Service, Node string
}

// ItemsPage is the result of an items request.
type ItemsPage struct {
	Node  string
	Items []string
	From  string
}

// The plugin that owns the workflow declares its points once, at package
// level.
var (
	exampleGetItems = triggers.NewPoint[*GetItemsRequest, *ItemsPage]("example.pubsub.items.get",
		"Fires before an items request is sent. A handler may Answer with a page (the request is not sent) or Cancel it.")
	exampleItemsReceived = triggers.NewEvent[*ItemsPage]("example.pubsub.items.received",
		"Fires after items were received from the network.")
)

// getItems is the workflow: ask the bus first, go to the network only when
// nobody answered.
func getItems(ctx context.Context, bus *triggers.Bus, req *GetItemsRequest) (*ItemsPage, error) {
	out, err := triggers.Run(ctx, bus, exampleGetItems, req)
	switch {
	case err != nil:
		return nil, fmt.Errorf("get items of %s: %w", req.Node, err)
	case out.Answered():
		return out.Result, nil
	case out.Cancelled():
		return nil, fmt.Errorf("get items of %s: cancelled by %s", req.Node, out.By)
	}
	page := &ItemsPage{Node: req.Node, Items: []string{"item-1", "item-2"}, From: "network"}
	if err := triggers.Notify(ctx, bus, exampleItemsReceived, page); err != nil {
		fmt.Println("observer failed:", err) // observers never change the result
	}
	return page, nil
}

// Example shows a cache plugin short-circuiting an items request at
// PriorityCache: a hit answers without the network; a miss continues, and
// the cache fills itself by observing what the network returned.
func Example() {
	ctx := context.Background()
	bus := triggers.New()

	cache := map[string]*ItemsPage{}
	handle, err := bus.Attach("pubsubcache",
		triggers.Intercept(exampleGetItems, triggers.PriorityCache,
			func(_ context.Context, req *GetItemsRequest) (triggers.Decision[*ItemsPage], error) {
				if page, ok := cache[req.Node]; ok {
					return triggers.Answer(&ItemsPage{Node: page.Node, Items: page.Items, From: "cache"}), nil
				}
				return triggers.Continue[*ItemsPage](), nil
			}),
		triggers.Observe(exampleItemsReceived, triggers.PriorityDefault,
			func(_ context.Context, page *ItemsPage) error {
				cache[page.Node] = page
				return nil
			}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}

	req := &GetItemsRequest{Service: "pubsub.example.org", Node: "blog"}
	for range 2 {
		page, err := getItems(ctx, bus, req)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(page.From, page.Items)
	}

	handle.Remove() // the plugin stopped: back to the network
	page, _ := getItems(ctx, bus, req)
	fmt.Println(page.From, page.Items)

	for _, c := range bus.Chains() {
		if c.Point == exampleGetItems.ID() {
			fmt.Println(c.Point, c.Kind, len(c.Handlers))
		}
	}
	// Output:
	// network [item-1 item-2]
	// cache [item-1 item-2]
	// network [item-1 item-2]
	// example.pubsub.items.get intercept 0
}
