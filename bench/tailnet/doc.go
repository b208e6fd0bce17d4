// Package tailnetbench measures the tailnet package: coordination fan-out
// with many lightweight nodes and TCP throughput between tsnet nodes,
// direct and through DERP. Run it with
//
//	go test ./bench/tailnet/ -run '^$' -bench . -benchtime 1x
//
// Everything runs in process on loopback.
package tailnetbench
