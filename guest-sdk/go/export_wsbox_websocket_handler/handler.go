// The handler exports, dispatched to the wsbox package (and so to the
// handler package `app` registers).
package export_wsbox_websocket_handler

import (
	_ "wit_component/app"
	"wit_component/wsbox"
	conn "wit_component/wsbox_websocket_connection"
	types "wit_component/wsbox_websocket_types"
)

func Upgrade(request types.UpgradeRequest) types.UpgradeDecision { return wsbox.Upgrade(request) }
func OnOpen(c *conn.Connection, info types.OpenInfo)             { wsbox.OnOpen(c, info) }
func OnMessage(c *conn.Connection, m types.Message)               { wsbox.OnMessage(c, m) }
func OnPing(c *conn.Connection, data []uint8)                     { wsbox.OnPing(c, data) }
func OnPong(c *conn.Connection, data []uint8)                     { wsbox.OnPong(c, data) }
func OnClose(c *conn.Connection, info types.CloseInfo)            { wsbox.OnClose(c, info) }
