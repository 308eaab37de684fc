package client_test

import (
	"context"
	"fmt"
	"log"

	"sitesync.example/gateway/lan/client"
)

// A script on the LAN pairs once with the code of an invite link, keeps the token, and
// connects with it afterwards.
func Example() {
	ctx := context.Background()
	base := "http://10.0.0.5:8080/"
	creds, err := client.Pair(ctx, nil, base, "CODE-FROM-THE-INVITE-LINK")
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.Dial(ctx, base, client.Options{Token: creds.Token})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var doc map[string]any
	if err := c.Call(ctx, "get", map[string]string{"id": "person_module/20001"}, &doc); err != nil {
		log.Fatal(err) // a *wire.Error: Data.Status 404, Data.Reason "not_found"…
	}
	fmt.Println(doc["title"])
	for n := range c.Notifications() {
		fmt.Println(n.Method, string(n.Params)) // changed {"ids":[…],"renamed":{…}}
	}
}
