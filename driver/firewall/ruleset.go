package firewall

import (
	"fmt"
	"slices"
	"strings"
)

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
	text    string // the rule as printed after "-A CHAIN "
	key     string // order-insensitive identity, see ruleKey
	comment string // value of --comment, "" if none
	target  string // value of -j, "" if none
}

// words splits the rule's text like a shell would, quotes removed. They are
// not kept: with thousands of rules in the cached copy they were its
// largest part, and few callers need them.
func (r savedRule) words() []string {
	toks, _ := splitRule(r.text) // parsed once already
	return toks
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
	r := savedRule{text: text, key: ruleKey(toks)}
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
