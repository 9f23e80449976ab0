package protocol

import (
	"errors"
	"testing"
)

func TestShort(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"abc":                      "abc",
		"0123456789ab":             "0123456789ab",
		"0123456789abcdef01234567": "0123456789ab",
	} {
		if got := Short(in); got != want {
			t.Errorf("Short(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBadRequest(t *testing.T) {
	err := BadRequest("option %s=%q: want one of %v", "mode", "x", []string{"a", "b"})
	if !errors.Is(err, ErrBadRequest) {
		t.Fatalf("%v does not wrap ErrBadRequest", err)
	}
	if want := `bad request: option mode="x": want one of [a b]`; err.Error() != want {
		t.Fatalf("got %q, want %q", err.Error(), want)
	}
}
