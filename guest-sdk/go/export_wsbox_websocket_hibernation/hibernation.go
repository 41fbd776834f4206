// The hibernation exports, dispatched to the wsbox package (and so to the
// handler's optional SaveState / LoadState methods).
package export_wsbox_websocket_hibernation

import (
	witTypes "go.bytecodealliance.org/pkg/wit/types"
	_ "wit_component/app"
	"wit_component/wsbox"
	conn "wit_component/wsbox_websocket_connection"
	hib "wit_component/wsbox_websocket_hibernation"
)

func OnHibernate(c *conn.Connection, maxAttachment uint32) witTypes.Option[[]uint8] {
	if state, ok := wsbox.OnHibernate(c, maxAttachment); ok {
		return witTypes.Some(state)
	}
	return witTypes.None[[]uint8]()
}

func OnHibernateError(c *conn.Connection, e hib.HibernateError) {
	wsbox.OnHibernateError(c, e.AttachmentTooLarge())
}

func OnWake(c *conn.Connection, attachment []uint8) { wsbox.OnWake(c, attachment) }
