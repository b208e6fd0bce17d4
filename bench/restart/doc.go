// Package restartbench measures how long a terminal page in Chromium takes
// to show its session again after `coder server` restarts: from the moment
// the new server answers /healthz to the moment the page shows the very
// screen it had (vim's) and a key typed in it is echoed, for outages of
// 2 s and 30 s (kill -TERM, wait, start the server again on the same
// config dir). The local agent outlives the server and is adopted. Run it
// with
//
//	go test ./bench/restart/ -run '^$' -bench . -benchtime 1x
//
// (bench/run.sh restart). It prints p50 and max per outage twice: with the
// page as it is, and with the page told to retry at once (an "online"
// event as the server answers), which leaves only the server's and the
// agent's share. Everything runs on loopback.
package restartbench
