// Command wsecho measures websocket echo round trips through each target,
// interleaved over repetitions: like ../shared/bench/ws-echo.sh's wsbench,
// but it sends a Host header and a cookie to the targets named with a
// "subdomain" prefix (a subdomain app reached on the server's loopback
// address). Loopback URLs only.
//
//	go run ./bench/apps/wsecho [-conns 16] [-size 64] [-duration 5s] [-reps 3] [-host H] [-cookie C] NAME=ws://127.0.0.1:PORT/ws ...
package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	conns := flag.Int("conns", 16, "concurrent connections")
	size := flag.Int("size", 64, "message size in bytes")
	dur := flag.Duration("duration", 5*time.Second, "time per target and repetition")
	reps := flag.Int("reps", 3, "repetitions, interleaved")
	host := flag.String("host", "", "Host header for targets named subdomain*")
	cookie := flag.String("cookie", "", "Cookie header for targets named subdomain*")
	flag.Parse()
	type target struct{ name, url string }
	var ts []target
	for _, a := range flag.Args() {
		name, u, ok := strings.Cut(a, "=")
		pu, err := url.Parse(u)
		if !ok || err != nil || (pu.Hostname() != "127.0.0.1" && pu.Hostname() != "localhost" && pu.Hostname() != "::1") {
			fmt.Fprintf(os.Stderr, "wsecho: %q is not NAME=ws://loopback/...\n", a)
			os.Exit(2)
		}
		ts = append(ts, target{name, u})
	}
	lat := map[string][]time.Duration{}
	msgs := map[string]int{}
	fmt.Printf("# wsecho: %d conns, %d-byte messages, %v per run, %d reps interleaved\n", *conns, *size, *dur, *reps)
	for r := 1; r <= *reps; r++ {
		for _, t := range ts {
			h := http.Header{}
			if strings.HasPrefix(t.name, "subdomain") {
				h.Set("Host", *host)
				h.Set("Cookie", *cookie)
			}
			var mu sync.Mutex
			var all []time.Duration
			var wg sync.WaitGroup
			var errs int
			deadline := time.Now().Add(*dur)
			for range *conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, _, err := websocket.DefaultDialer.Dial(t.url, h)
					if err != nil {
						mu.Lock()
						errs++
						mu.Unlock()
						return
					}
					defer c.Close()
					msg := make([]byte, *size)
					var mine []time.Duration
					for time.Now().Before(deadline) {
						start := time.Now()
						if c.WriteMessage(websocket.BinaryMessage, msg) != nil {
							break
						}
						if _, _, err := c.ReadMessage(); err != nil {
							break
						}
						mine = append(mine, time.Since(start))
					}
					mu.Lock()
					all = append(all, mine...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			slices.Sort(all)
			lat[t.name] = append(lat[t.name], all...)
			msgs[t.name] += len(all)
			fmt.Printf("%-10s rep %d  msgs/s %8.0f  p50_us %6d  p99_us %6d  errs %d\n", t.name, r,
				float64(len(all))/dur.Seconds(), pct(all, 50).Microseconds(), pct(all, 99).Microseconds(), errs)
		}
	}
	fmt.Println("# all runs")
	for _, t := range ts {
		all := lat[t.name]
		slices.Sort(all)
		fmt.Printf("%-10s msgs/s %8.0f  p50_us %6d  p99_us %6d\n", t.name, float64(msgs[t.name])/(dur.Seconds()*float64(*reps)),
			pct(all, 50).Microseconds(), pct(all, 99).Microseconds())
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[(len(d)-1)*p/100]
}
