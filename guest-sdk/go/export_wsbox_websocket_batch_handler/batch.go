// The batch export, dispatched to the wsbox package.
package export_wsbox_websocket_batch_handler

import (
	"wit_component/wsbox"
	conn "wit_component/wsbox_websocket_connection"
	types "wit_component/wsbox_websocket_types"
)

func OnMessages(c *conn.Connection, batch types.MessageBatch) { wsbox.OnMessages(c, batch) }
