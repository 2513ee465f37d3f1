package h1

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// BenchmarkQuiet: the check of an idle connection before its reuse (quiet), alone: one recv with
// MSG_PEEK over plain TCP, and besides over TLS, the TLS layer's read under a past deadline (see
// BenchmarkPoolDo for a whole exchange).
func BenchmarkQuiet(b *testing.B) {
	for _, secure := range []bool{false, true} {
		b.Run(map[bool]string{false: "http", true: "https"}[secure], func(b *testing.B) {
			srv := httptest.NewUnstartedServer(http.NotFoundHandler())
			client := awshttp.NewBuildableClient()
			if secure {
				srv.StartTLS()
				roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
				client = client.WithTransportOptions(func(tr *http.Transport) { tr.TLSClientConfig.RootCAs = roots })
			} else {
				srv.Start()
			}
			b.Cleanup(srv.Close)
			p := NewPool(client, 5*time.Second, time.Second)
			scheme := map[bool]string{false: "http", true: "https"}[secure]
			addr := srv.Listener.Addr().String()
			c, err := p.dialConn(context.Background(), p.host(scheme, addr), time.Now().Add(5*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.ReportAllocs()
			for b.Loop() {
				if !c.quiet() {
					b.Fatal("not quiet")
				}
			}
		})
	}
}
