package firewall

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"

	"github.com/mynet/mynet/timing"
)

// backend runs iptables-save and iptables-restore (or the ip6tables ones) of
// the same flavour (nf_tables or legacy) as the iptables binary that
// go-iptables found. Every call execs one process on the calling OS thread,
// so a caller that locked its goroutine to a thread in another network
// namespace programs that namespace.
type backend struct {
	fam  family
	name string // "iptables" or "ip6tables"

	// How to start iptables-save / iptables-restore: path and argv[0].
	// When iptables is a link to a multi-call binary (xtables-nft-multi,
	// xtables-legacy-multi) we start that binary with argv[0] set to the
	// applet name, so save/restore always use the same backend as iptables.
	savePath, saveArg0       string
	restorePath, restoreArg0 string
	wait                     bool // restore understands --wait

	// runs counts the processes started (tests use it to prove that an
	// idempotent call changes nothing).
	runs int
	// applyHook, when set, replaces running iptables-restore (tests inject
	// failures with it).
	applyHook func(script string) error

	// nft: the nf_tables backend, whose changes bump the ruleset
	// generation (cache.go); the legacy one does not.
	nft bool
	// cached: the ruleset as of Firewall.gen (nil: read it again).
	cached *ruleset
}

func newBackend(fam family) (*backend, error) {
	proto := iptables.ProtocolIPv4
	name := "iptables"
	if fam == v6 {
		proto = iptables.ProtocolIPv6
		name = "ip6tables"
	}
	ipt, err := iptables.NewWithProtocol(proto)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b := &backend{fam: fam, name: name}
	v1, v2, v3 := ipt.GetIptablesVersion()
	b.wait = v1 > 1 || (v1 == 1 && (v2 > 6 || (v2 == 6 && v3 >= 2)))

	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	resolved, err := filepath.EvalSymlinks(path)
	b.nft = isNft(resolved)
	if err == nil && isMultiBinary(filepath.Base(resolved)) {
		b.savePath, b.saveArg0 = resolved, name+"-save"
		b.restorePath, b.restoreArg0 = resolved, name+"-restore"
		return b, nil
	}
	if b.savePath, err = exec.LookPath(name + "-save"); err != nil {
		return nil, fmt.Errorf("%s-save: %w", name, err)
	}
	if b.restorePath, err = exec.LookPath(name + "-restore"); err != nil {
		return nil, fmt.Errorf("%s-restore: %w", name, err)
	}
	b.saveArg0, b.restoreArg0 = name+"-save", name+"-restore"
	return b, nil
}

// isNft tells the nf_tables flavour of iptables from the legacy one: by the
// multi-call binary it links to, else by its version line.
func isNft(resolved string) bool {
	switch filepath.Base(resolved) {
	case "xtables-nft-multi":
		return true
	case "xtables-legacy-multi":
		return false
	}
	out, err := exec.Command(resolved, "--version").Output()
	return err == nil && strings.Contains(string(out), "nf_tables")
}

func isMultiBinary(base string) bool {
	return strings.HasPrefix(base, "xtables-") && strings.HasSuffix(base, "-multi")
}

// save returns the current filter and nat tables.
func (b *backend) save() (*ruleset, error) {
	b.runs++
	defer timing.Since(timing.Iptables, time.Now())
	var stdout, stderr bytes.Buffer
	cmd := exec.Cmd{Path: b.savePath, Args: []string{b.saveArg0}, Stdout: &stdout, Stderr: &stderr}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s-save: %w: %s", b.name, err, strings.TrimSpace(stderr.String()))
	}
	rs, err := parseSave(stdout.String())
	if err != nil {
		return nil, fmt.Errorf("%s-save: %w", b.name, err)
	}
	return rs, nil
}

var restoreLineRE = regexp.MustCompile(`line (\d+)`)

// apply feeds the script to iptables-restore --noflush. Each table of the
// script is committed atomically by iptables-restore; tables are committed one
// after the other, so a failure may leave an earlier table applied (callers
// roll back from a fresh save).
func (b *backend) apply(s *script) error {
	if s.empty() {
		return nil
	}
	text := s.String()
	if b.applyHook != nil {
		return b.applyHook(text)
	}
	b.runs++
	defer timing.Since(timing.Iptables, time.Now())
	args := []string{b.restoreArg0, "--noflush"}
	if b.wait {
		args = append(args, "--wait")
	}
	var stderr bytes.Buffer
	cmd := exec.Cmd{Path: b.restorePath, Args: args, Stdin: strings.NewReader(text), Stderr: &stderr}
	if err := cmd.Run(); err != nil {
		msg := strings.Join(strings.Fields(stderr.String()), " ")
		if m := restoreLineRE.FindStringSubmatch(msg); m != nil {
			if n, convErr := strconv.Atoi(m[1]); convErr == nil {
				lines := strings.Split(text, "\n")
				if n >= 1 && n <= len(lines) {
					msg += fmt.Sprintf(" (rule: %s)", lines[n-1])
				}
			}
		}
		return fmt.Errorf("%s-restore: %w: %s", b.name, err, msg)
	}
	return nil
}

// ruleset is the parsed output of iptables-save, reduced to what we need.
type ruleset struct {
	tables map[string]*table
	// stale: others changed the ruleset since it was read; only our own
	// chains (MYNET-*) are still known to be right (cache.go).
	stale bool
	// legacyToo: iptables-nft-save says iptables-legacy tables exist as
	// well (another program uses the other backend).
	legacyToo bool
}

type table struct {
	name   string
	chains map[string]*chain
	order  []string // chain names in save order
}

type chain struct {
	name    string
	builtin bool
	rules   []savedRule
}

type savedRule struct {
	text    string   // the rule as printed after "-A CHAIN "
	tokens  []string // text split like a shell would, quotes removed
	key     string   // order-insensitive identity, see ruleKey
	comment string   // value of --comment, "" if none
	target  string   // value of -j, "" if none
}

func (rs *ruleset) table(name string) *table {
	if t, ok := rs.tables[name]; ok {
		return t
	}
	return &table{name: name, chains: map[string]*chain{}}
}

func (rs *ruleset) chain(tbl, name string) *chain {
	return rs.table(tbl).chains[name]
}

// count returns how many rules of chain c of table tbl have the given key.
func (rs *ruleset) count(tbl, c string, key string) int {
	ch := rs.chain(tbl, c)
	if ch == nil {
		return 0
	}
	n := 0
	for _, r := range ch.rules {
		if r.key == key {
			n++
		}
	}
	return n
}

func parseSave(out string) (*ruleset, error) {
	rs := &ruleset{tables: map[string]*table{}}
	var cur *table
	for lineNo, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "#"):
			if strings.Contains(line, "legacy tables present") {
				rs.legacyToo = true
			}
		case line == "":
		case strings.HasPrefix(line, "*"):
			cur = &table{name: line[1:], chains: map[string]*chain{}}
			rs.tables[cur.name] = cur
		case line == "COMMIT":
			cur = nil
		case cur == nil:
			return nil, fmt.Errorf("line %d outside a table: %q", lineNo+1, line)
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return nil, fmt.Errorf("line %d: bad chain line %q", lineNo+1, line)
			}
			ch := &chain{name: f[0], builtin: f[1] != "-"}
			cur.chains[ch.name] = ch
			cur.order = append(cur.order, ch.name)
		case strings.HasPrefix(line, "-A "):
			toks, err := splitRule(line)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo+1, err)
			}
			if len(toks) < 2 {
				return nil, fmt.Errorf("line %d: bad rule %q", lineNo+1, line)
			}
			ch := cur.chains[toks[1]]
			if ch == nil {
				ch = &chain{name: toks[1]}
				cur.chains[ch.name] = ch
				cur.order = append(cur.order, ch.name)
			}
			// Keep the printed text (minus "-A CHAIN ") for -D lines: it is
			// exactly what iptables-restore parses back.
			rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(line, "-A "), toks[1]))
			ch.rules = append(ch.rules, newSavedRule(rest, toks[2:]))
		default:
			// Other lines (policies with counters etc.) are not used.
		}
	}
	return rs, nil
}

func newSavedRule(text string, toks []string) savedRule {
	r := savedRule{text: text, tokens: toks, key: ruleKey(toks)}
	r.comment, _ = optValue(toks, "--comment")
	r.target, _ = optValue(toks, "-j")
	return r
}

// optValue returns the token after the first occurrence of opt.
func optValue(toks []string, opt string) (string, bool) {
	for i := 0; i+1 < len(toks); i++ {
		if toks[i] == opt {
			return toks[i+1], true
		}
	}
	return "", false
}

// splitRule splits an iptables-save line into words: blanks separate words,
// double quotes group, a backslash escapes the next character inside quotes.
func splitRule(line string) ([]string, error) {
	var (
		toks  []string
		cur   strings.Builder
		inTok bool
		inQ   bool
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQ && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			inQ = !inQ
			inTok = true
		case !inQ && (c == ' ' || c == '\t'):
			if inTok {
				toks = append(toks, cur.String())
				cur.Reset()
				inTok = false
			}
		default:
			cur.WriteByte(c)
			inTok = true
		}
	}
	if inQ {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inTok {
		toks = append(toks, cur.String())
	}
	return toks, nil
}

// ruleKey is an identity for a rule that does not depend on the order in
// which iptables prints options: the words are cut into segments (an option,
// an optional leading "!", and its values) and the sorted segments are joined.
// iptables-save prints "-s/-d/-i/-o/-p" before the matches whatever order they
// were given in, and nft and legacy place comments differently; the key hides
// both.
func ruleKey(toks []string) string {
	var segs []string
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			segs = append(segs, strings.Join(cur, " "))
			cur = nil
		}
	}
	for _, t := range toks {
		if t == "!" {
			flush()
			cur = append(cur, t)
			continue
		}
		isOpt := len(t) > 1 && t[0] == '-' && (t[1] < '0' || t[1] > '9')
		if isOpt && !(len(cur) == 1 && cur[0] == "!") {
			flush()
		}
		cur = append(cur, t)
	}
	flush()
	slices.Sort(segs)
	return strings.Join(segs, "\x00")
}

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
		return ":" + op.chain + " - [0:0]"
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
	s.add(tbl, scriptOp{kind: opDelete, chain: chain, text: r.text, toks: r.tokens})
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
