package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	pb "github.com/banyan-sched/banyan/api/banyanv1"
	"github.com/banyan-sched/banyan/scheduler/acl"
	"github.com/spf13/cobra"
)

// newACLCmd is `sched acl`: bootstrap, policies, tokens, whoami.
func newACLCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Manage ACL policies and tokens (servers run with --acl)",
	}
	policy := &cobra.Command{Use: "policy", Short: "Manage ACL policies"}
	policy.AddCommand(newACLPolicyApplyCmd(g), newACLPolicyListCmd(g), newACLPolicyDeleteCmd(g))
	token := &cobra.Command{Use: "token", Short: "Manage ACL tokens"}
	token.AddCommand(newACLTokenCreateCmd(g), newACLTokenListCmd(g), newACLTokenRevokeCmd(g))
	cmd.AddCommand(newACLBootstrapCmd(g), policy, token, newACLWhoAmICmd(g))
	return cmd
}

func newACLBootstrapCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "bootstrap",
		Short: "Create the first management token (works once; its secret is shown only now)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "acl bootstrap", func(ctx context.Context, c *client) (*pb.ACLToken, error) {
				return c.acl.Bootstrap(ctx, &pb.ACLBootstrapRequest{})
			}, printNewToken)
		},
	}
}

// printNewToken shows a token with its secret: the only time it is shown.
func printNewToken(t *pb.ACLToken) error {
	fmt.Printf("Accessor ID: %s\nSecret ID:   %s\nName:        %s\n", t.AccessorId, t.Secret, t.Name)
	if t.Management {
		fmt.Println("Type:        management")
	} else {
		fmt.Printf("Policies:    %s\n", strings.Join(t.Policies, ", "))
	}
	fmt.Fprintln(os.Stderr, "Keep the secret: it is not shown again (pass it with --token or SCHED_TOKEN).")
	return nil
}

func newACLPolicyApplyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "apply NAME FILE",
		Short: "Create or replace a policy from a YAML file (pools: {PATTERN: read|submit|admin}, cluster, agent)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[1])
			if err != nil {
				return fmt.Errorf("read policy file: %w", err)
			}
			p, err := acl.ParseYAML(args[0], data)
			if err != nil {
				return usageError{fmt.Sprintf("%s: %v", args[1], err)}
			}
			return runCall(cmd, g, "apply policy", func(ctx context.Context, c *client) (*pb.ACLPolicy, error) {
				return c.acl.UpsertPolicy(ctx, &pb.UpsertPolicyRequest{Policy: p})
			}, func(p *pb.ACLPolicy) error {
				fmt.Printf("policy %s applied\n", p.Name)
				return nil
			})
		},
	}
}

func newACLPolicyListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List policies and their rules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "list policies", func(ctx context.Context, c *client) (*pb.ListPoliciesResponse, error) {
				return c.acl.ListPolicies(ctx, &pb.ListPoliciesRequest{})
			}, func(r *pb.ListPoliciesResponse) error {
				w := newTable()
				fmt.Fprintln(w, "NAME\tPOOLS\tCLUSTER\tAGENT\tDESCRIPTION")
				for _, p := range r.Policies {
					var rules []string
					for _, rule := range p.Pools {
						rules = append(rules, rule.Pattern+"="+rule.Capability)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.Name, orDash(strings.Join(rules, ",")), orDash(p.Cluster),
						orDash(p.Agent), p.Description)
				}
				return w.Flush()
			})
		},
	}
}

func newACLPolicyDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a policy (tokens naming it lose what it granted)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "delete policy", func(ctx context.Context, c *client) (*pb.DeletePolicyResponse, error) {
				return c.acl.DeletePolicy(ctx, &pb.DeletePolicyRequest{Name: args[0]})
			}, func(*pb.DeletePolicyResponse) error {
				fmt.Printf("policy %s deleted\n", args[0])
				return nil
			})
		},
	}
}

func newACLTokenCreateCmd(g *globals) *cobra.Command {
	var name string
	var policies []string
	var management bool
	cmd := &cobra.Command{
		Use:   "create --name NAME --policy POLICY [--policy POLICY2] [--management]",
		Short: "Create a token (its secret is shown only now)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return usageError{"--name is required"}
			}
			if management == (len(policies) > 0) {
				return usageError{"give --policy (one or more) or --management, not both"}
			}
			return runCall(cmd, g, "create token", func(ctx context.Context, c *client) (*pb.ACLToken, error) {
				return c.acl.CreateToken(ctx, &pb.CreateTokenRequest{Name: name, Policies: policies, Management: management})
			}, printNewToken)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "token name (shown in lists and audit lines)")
	cmd.Flags().StringArrayVar(&policies, "policy", nil, "policy the token has (repeatable)")
	cmd.Flags().BoolVar(&management, "management", false, "a management token: may do everything")
	return cmd
}

func newACLTokenListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List tokens (accessor ids, never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "list tokens", func(ctx context.Context, c *client) (*pb.ListTokensResponse, error) {
				return c.acl.ListTokens(ctx, &pb.ListTokensRequest{})
			}, func(r *pb.ListTokensResponse) error {
				w := newTable()
				fmt.Fprintln(w, "ACCESSOR\tNAME\tTYPE\tPOLICIES\tCREATED")
				for _, t := range r.Tokens {
					kind := "client"
					if t.Management {
						kind = "management"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.AccessorId, t.Name, kind, orDash(strings.Join(t.Policies, ",")),
						fmtTime(t.CreateUnixMs))
				}
				return w.Flush()
			})
		},
	}
}

func newACLTokenRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ACCESSOR",
		Short: "Revoke a token by its accessor id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "revoke token", func(ctx context.Context, c *client) (*pb.RevokeTokenResponse, error) {
				return c.acl.RevokeToken(ctx, &pb.RevokeTokenRequest{AccessorId: args[0]})
			}, func(*pb.RevokeTokenResponse) error {
				fmt.Printf("token %s revoked\n", args[0])
				return nil
			})
		},
	}
}

func newACLWhoAmICmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show the token this command sends",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, g, "whoami", func(ctx context.Context, c *client) (*pb.ACLToken, error) {
				return c.acl.WhoAmI(ctx, &pb.WhoAmIRequest{})
			}, func(t *pb.ACLToken) error {
				kind := "policies " + strings.Join(t.Policies, ", ")
				if t.Management {
					kind = "management"
				}
				fmt.Printf("%s (accessor %s): %s\n", t.Name, t.AccessorId, kind)
				return nil
			})
		},
	}
}
