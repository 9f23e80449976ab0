package firewall

import (
	"strconv"
	"strings"
)

// script collects iptables-restore operations per table. It keeps each
// operation's structure so the cached copy of the ruleset can replay it.
type script struct {
	order []string
	ops   map[string][]scriptOp
}

type opKind int

const (
	opNewChain opKind = iota
	opFlush
	opDeleteChain
	opAppend
	opInsert
	opDelete
)

type scriptOp struct {
	kind  opKind
	chain string
	text  string   // rule text (append, insert, delete)
	toks  []string // rule words, quotes removed
	pos   int      // insert position, 1-based
}

func newScript() *script { return &script{ops: map[string][]scriptOp{}} }

func (s *script) add(tbl string, op scriptOp) {
	if _, ok := s.ops[tbl]; !ok {
		s.order = append(s.order, tbl)
	}
	s.ops[tbl] = append(s.ops[tbl], op)
}

func (s *script) empty() bool { return s.tables() == 0 }

// tables is the number of table sections with operations: iptables-nft-restore
// commits each as one nf_tables transaction.
func (s *script) tables() int {
	n := 0
	for _, ops := range s.ops {
		if len(ops) > 0 {
			n++
		}
	}
	return n
}

func (op scriptOp) String() string {
	switch op.kind {
	case opNewChain:
		// Not ":CHAIN - [0:0]", which with --noflush empties a chain that
		// exists: -N fails instead, so a change planned on a copy that missed
		// a chain someone else made (another mynet instance) is planned again
		// on a fresh read rather than wiping that chain.
		return "-N " + op.chain
	case opFlush:
		return "-F " + op.chain
	case opDeleteChain:
		return "-X " + op.chain
	case opAppend:
		return "-A " + op.chain + " " + op.text
	case opInsert:
		return "-I " + op.chain + " " + strconv.Itoa(op.pos) + " " + op.text
	default:
		return "-D " + op.chain + " " + op.text
	}
}

func (s *script) String() string {
	var b strings.Builder
	for _, t := range s.order {
		if len(s.ops[t]) == 0 {
			continue
		}
		b.WriteString("*" + t + "\n")
		for _, op := range s.ops[t] {
			b.WriteString(op.String() + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// newChain, appendRule, ... add one operation each.
func (s *script) newChain(tbl, name string)   { s.add(tbl, scriptOp{kind: opNewChain, chain: name}) }
func (s *script) flushChain(tbl, name string) { s.add(tbl, scriptOp{kind: opFlush, chain: name}) }
func (s *script) deleteChain(tbl, name string) {
	s.add(tbl, scriptOp{kind: opDeleteChain, chain: name})
}
func (s *script) appendRule(r rule) {
	s.add(r.table, scriptOp{kind: opAppend, chain: r.chain, text: r.text(), toks: r.args})
}
func (s *script) insertRule(r rule, pos int) {
	s.add(r.table, scriptOp{kind: opInsert, chain: r.chain, text: r.text(), toks: r.args, pos: pos})
}

// deleteSaved deletes a rule as iptables-save printed it.
func (s *script) deleteSaved(tbl, chain string, r savedRule) {
	s.add(tbl, scriptOp{kind: opDelete, chain: chain, text: r.text, toks: r.words()})
}

// deleteRule deletes a rule we generate.
func (s *script) deleteRule(r rule) {
	s.add(r.table, scriptOp{kind: opDelete, chain: r.chain, text: r.text(), toks: r.args})
}

// rule is a rule we generate.
type rule struct {
	table, chain string
	args         []string
}

func (r rule) key() string { return ruleKey(r.args) }

// text renders the arguments for a restore line, quoting where needed.
func (r rule) text() string {
	out := make([]string, len(r.args))
	for i, a := range r.args {
		if a == "" || strings.ContainsAny(a, " \t\"\\'") {
			a = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func (r rule) String() string { return r.table + " " + r.chain + " " + r.text() }
