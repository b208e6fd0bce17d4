package main_test

import (
	"testing"

	"github.com/gatewaydev/coder/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }
