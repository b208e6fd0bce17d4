package main

import (
	"github.com/spf13/cobra"

	"github.com/gatewaydev/coder/cli"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "coder",
		Short:         "Coder: browser-first remote development workspaces",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newServerCmd(), newAgentCmd())
	root.AddCommand(cli.Commands(version)...)
	root.SetFlagErrorFunc(cli.FlagError)
	return root
}

// The option table lives in package cli, which every command shares.
type (
	optionSet     = cli.OptionSet
	stringValue   = cli.StringValue
	boolValue     = cli.BoolValue
	durationValue = cli.DurationValue
	intValue      = cli.IntValue
	sizeValue     = cli.SizeValue
	urlValue      = cli.URLValue
)

var (
	newLogger        = cli.NewLogger
	defaultConfigDir = cli.DefaultConfigDir
)
