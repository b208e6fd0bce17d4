package cli_test

import (
	"testing"

	"github.com/gatewaydev/coder/internal/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyNoLeaks(m) }
