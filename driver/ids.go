package driver

import "github.com/mynet/mynet/protocol"

// checkID refuses a network or endpoint id that could not safely become part
// of a link name (mn-<id>, mnh<id>) or an iptables chain name. Docker's ids
// are 64 hex digits; letters and digits are all we accept.
func checkID(field, id string) error {
	if id == "" {
		return protocol.BadRequest("%s is empty", field)
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return protocol.BadRequest("%s %q has the character %q: ids are letters and digits (Docker sends 64 hex digits)", field, id, c)
		}
	}
	return nil
}
