package device

import (
	"testing"

	"tunnelplane/dataplane/device/devicetest"
)

func TestChecksumPartialTest(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, udp := range []bool{false, true} {
			p, _, _ := superPacket(t, v6, udp, 300, 0, tcpFlagACK)
			s := parseSeg(p, false)
			if s.hl == 0 || !checksumPartial(p, &s) {
				t.Fatalf("v6=%v udp=%v: partial packet not recognised", v6, udp)
			}
			if !CompletePartial(p) {
				t.Fatalf("v6=%v udp=%v: CompletePartial did not take it", v6, udp)
			}
			devicetest.CheckL4(t, p)
			if checksumPartial(p, &s) || !tcpChecksumOK(p, &s) {
				t.Fatalf("v6=%v udp=%v: completed packet still partial or wrong", v6, udp)
			}
		}
	}
}
