package main

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// option is one row of a command's option table: a flag, its CODER_*
// environment variable and its default. Precedence: flag, then
// environment, then default.
type option struct {
	Flag        string
	Short       string
	Env         string
	Default     string
	Description string
	Value       pflag.Value
	// Secret options are redacted when the effective options are logged.
	Secret bool
	Hidden bool
}

// optionSet is a command's option table.
type optionSet []*option

// register adds the options to cmd's flags, with the environment variable
// in each flag's help, and arranges for the environment to be read before
// the command runs.
func (os_ optionSet) register(cmd *cobra.Command) {
	for _, o := range os_ {
		if o.Env == "" {
			// Every flag has its environment variable.
			o.Env = "CODER_" + strings.ToUpper(strings.ReplaceAll(o.Flag, "-", "_"))
		}
		if o.Default != "" {
			if err := o.Value.Set(o.Default); err != nil {
				panic(fmt.Sprintf("option %s: bad default %q: %v", o.Flag, o.Default, err))
			}
		}
		usage := o.Description
		if o.Env != "" {
			usage += fmt.Sprintf(" [$%s]", o.Env)
		}
		f := cmd.Flags().VarPF(o.Value, o.Flag, o.Short, usage)
		f.DefValue = o.Default
		if o.Value.Type() == "bool" {
			f.NoOptDefVal = "true"
		}
		f.Hidden = o.Hidden
	}
	prev := cmd.PreRunE
	cmd.PreRunE = func(cmd *cobra.Command, args []string) error {
		if err := os_.applyEnv(cmd.Flags()); err != nil {
			return err
		}
		if prev != nil {
			return prev(cmd, args)
		}
		return nil
	}
}

// applyEnv sets every option not given as a flag from its environment
// variable. A bad value is an error naming both.
func (os_ optionSet) applyEnv(fs *pflag.FlagSet) error {
	for _, o := range os_ {
		if o.Env == "" || fs.Changed(o.Flag) {
			continue
		}
		v, ok := os.LookupEnv(o.Env)
		if !ok {
			continue
		}
		if err := o.Value.Set(v); err != nil {
			return fmt.Errorf("invalid value %q for $%s (--%s): %v", v, o.Env, o.Flag, err)
		}
	}
	return nil
}

// nonDefault lists the options whose value differs from the default, for
// the start-up log; secrets are redacted.
func (os_ optionSet) nonDefault() []any {
	var out []any
	for _, o := range os_ {
		v := o.Value.String()
		if v == o.Default || (o.Default == "" && (v == "false" || v == "[]" || v == "0s")) {
			continue
		}
		if o.Secret {
			v = "<redacted>"
		}
		out = append(out, o.Flag, v)
	}
	return out
}

// Typed values.

type stringValue string

func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }
func (s *stringValue) String() string     { return string(*s) }
func (s *stringValue) Type() string       { return "string" }

type boolValue bool

func (b *boolValue) Set(v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "yes", "on":
		*b = true
	case "false", "0", "no", "off", "":
		*b = false
	default:
		return fmt.Errorf("must be true or false")
	}
	return nil
}
func (b *boolValue) String() string { return fmt.Sprint(bool(*b)) }
func (b *boolValue) Type() string   { return "bool" }

type durationValue time.Duration

func (d *durationValue) Set(v string) error {
	x, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("must be a duration like 30s or 5m")
	}
	if x < 0 {
		return fmt.Errorf("must not be negative")
	}
	*d = durationValue(x)
	return nil
}
func (d *durationValue) String() string { return time.Duration(*d).String() }
func (d *durationValue) Type() string   { return "duration" }

type intValue int

func (i *intValue) Set(v string) error {
	var x int
	if _, err := fmt.Sscan(v, &x); err != nil || fmt.Sprint(x) != strings.TrimSpace(v) {
		return fmt.Errorf("must be a whole number")
	}
	*i = intValue(x)
	return nil
}
func (i *intValue) String() string { return fmt.Sprint(int(*i)) }
func (i *intValue) Type() string   { return "int" }

// sizeValue is a byte size: a number with an optional KiB, MiB or GiB.
type sizeValue int

func (v *sizeValue) Set(s string) error {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		n      int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.n
			break
		}
	}
	var n int
	if _, err := fmt.Sscan(t, &n); err != nil || fmt.Sprint(n) != t || n < 0 {
		return fmt.Errorf("must be a size like 512KiB or 4MiB")
	}
	*v = sizeValue(n * mult)
	return nil
}
func (v *sizeValue) String() string {
	switch n := int(*v); {
	case n != 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n != 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprint(n)
	}
}
func (v *sizeValue) Type() string { return "size" }

// urlValue accepts an empty string or an absolute http(s) URL.
type urlValue struct{ u *url.URL }

func (u *urlValue) Set(v string) error {
	if v == "" {
		u.u = nil
		return nil
	}
	p, err := url.Parse(v)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Errorf("must be an http:// or https:// URL")
	}
	u.u = p
	return nil
}
func (u *urlValue) String() string {
	if u.u == nil {
		return ""
	}
	return u.u.String()
}
func (u *urlValue) Type() string { return "url" }

// enumValue accepts one of a fixed set of words.
type enumValue struct {
	v       string
	choices []string
}

func (e *enumValue) Set(v string) error {
	for _, c := range e.choices {
		if v == c {
			e.v = v
			return nil
		}
	}
	return fmt.Errorf("must be one of %s", strings.Join(e.choices, ", "))
}
func (e *enumValue) String() string { return e.v }
func (e *enumValue) Type() string   { return strings.Join(e.choices, "|") }
