package store

import (
	"testing"
)

func TestMain(m *testing.M) {
	if builtinHelper() {
		return
	}
	m.Run()
}
