package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// strictUsage makes every mistake in how sched is called a usage error
// (exit code 2) with a message naming it, instead of help text and exit 0:
// an unknown or missing subcommand, a wrong number of arguments, a bad
// flag. Scripts can then tell "you called it wrong" (2) from "it failed"
// (1).
func strictUsage(root *cobra.Command) {
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Sprintf("%s: %v (see %s --help)", c.CommandPath(), err, c.CommandPath())}
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			c.Args = cobra.ArbitraryArgs
			c.SuggestionsMinimumDistance = 3
			c.RunE = func(c *cobra.Command, args []string) error {
				if len(args) == 0 && !c.HasParent() {
					return c.Help() // plain `sched`
				}
				if len(args) == 0 {
					return usageError{fmt.Sprintf("%s needs a subcommand: %s (see %s --help)", c.CommandPath(),
						subcommandNames(c), c.CommandPath())}
				}
				msg := fmt.Sprintf("unknown command %q for %s", args[0], c.CommandPath())
				if s := c.SuggestionsFor(args[0]); len(s) > 0 {
					msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
				} else {
					msg += ": want one of " + subcommandNames(c)
				}
				return usageError{msg}
			}
		}
		if args := c.Args; args != nil {
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return usageError{fmt.Sprintf("%s: %v (usage: %s)", c.CommandPath(), err, c.UseLine())}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// subcommandNames lists a command's visible subcommands.
func subcommandNames(c *cobra.Command) string {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return strings.Join(names, ", ")
}
