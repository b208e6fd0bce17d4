package cli

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Option is one row of a command's option table: a flag, its CODER_*
// environment variable and its default. Precedence: flag, then
// environment, then default.
type Option struct {
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

// OptionSet is a command's option table.
type OptionSet []*Option

// Register adds the options to cmd's flags, with the environment variable
// in each flag's help, and arranges for the environment to be read before
// the command runs.
func (os_ OptionSet) Register(cmd *cobra.Command) {
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
func (os_ OptionSet) applyEnv(fs *pflag.FlagSet) error {
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

// NonDefault lists the options whose value differs from the default, for
// the start-up log; secrets are redacted.
func (os_ OptionSet) NonDefault() []any {
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

// Typed values: each is a pflag.Value whose zero value is the empty or
// zero setting.

// StringValue is any string.
type StringValue string

func (s *StringValue) Set(v string) error { *s = StringValue(v); return nil }
func (s *StringValue) String() string     { return string(*s) }
func (s *StringValue) Type() string       { return "string" }

// BoolValue accepts true/false, 1/0, yes/no and on/off.
type BoolValue bool

func (b *BoolValue) Set(v string) error {
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
func (b *BoolValue) String() string { return fmt.Sprint(bool(*b)) }
func (b *BoolValue) Type() string   { return "bool" }

// DurationValue is a non-negative duration like 30s or 5m.
type DurationValue time.Duration

func (d *DurationValue) Set(v string) error {
	x, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("must be a duration like 30s or 5m")
	}
	if x < 0 {
		return fmt.Errorf("must not be negative")
	}
	*d = DurationValue(x)
	return nil
}
func (d *DurationValue) String() string { return time.Duration(*d).String() }
func (d *DurationValue) Type() string   { return "duration" }

// IntValue is a whole number.
type IntValue int

func (i *IntValue) Set(v string) error {
	var x int
	if _, err := fmt.Sscan(v, &x); err != nil || fmt.Sprint(x) != strings.TrimSpace(v) {
		return fmt.Errorf("must be a whole number")
	}
	*i = IntValue(x)
	return nil
}
func (i *IntValue) String() string { return fmt.Sprint(int(*i)) }
func (i *IntValue) Type() string   { return "int" }

// SizeValue is a byte size: a number with an optional KiB, MiB or GiB.
type SizeValue int

func (v *SizeValue) Set(s string) error {
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
	*v = SizeValue(n * mult)
	return nil
}
func (v *SizeValue) String() string {
	switch n := int(*v); {
	case n != 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n != 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprint(n)
	}
}
func (v *SizeValue) Type() string { return "size" }

// URLValue accepts an empty string or an absolute http(s) URL.
type URLValue struct{ u *url.URL }

func (u *URLValue) Set(v string) error {
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
func (u *URLValue) String() string {
	if u.u == nil {
		return ""
	}
	return u.u.String()
}
func (u *URLValue) Type() string { return "url" }

// URL returns the URL, or nil when it is not set.
func (u *URLValue) URL() *url.URL { return u.u }

// EnumValue accepts one of a fixed set of words.
type EnumValue struct {
	v       string
	choices []string
}

func (e *EnumValue) Set(v string) error {
	for _, c := range e.choices {
		if v == c {
			e.v = v
			return nil
		}
	}
	return fmt.Errorf("must be one of %s", strings.Join(e.choices, ", "))
}
func (e *EnumValue) String() string { return e.v }
func (e *EnumValue) Type() string   { return strings.Join(e.choices, "|") }
