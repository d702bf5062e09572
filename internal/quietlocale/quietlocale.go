// Package quietlocale keeps Fyne from logging "Error parsing user locale C" at start-up
// on systems whose locale is C.UTF-8 or POSIX.UTF-8 (the default of many containers
// and shells).
//
// Fyne reads the locale in a package initialiser, through github.com/jeandeaual/go-locale,
// which takes the first of LC_ALL, LC_MESSAGES and LANG and, unless it is exactly "C" or
// "POSIX", prefers LANGUAGE; it then cuts "C.UTF-8" to the language "C", which is not a
// BCP 47 tag. This package's initialiser sets LANGUAGE=en when the locale is a C or POSIX
// one and LANGUAGE is unset. Only message translation reads LANGUAGE, and for a C locale
// the messages are English anyway; LANG and LC_* are left as they are.
//
// It must be initialised before go-locale: Go initialises, among the packages whose
// imports are initialised, the one whose import path sorts first, and this package
// imports only os and strings (as go-locale does) and its path sorts before go-locale's.
// TestQuietLocale (package main) checks the result.
package quietlocale

import (
	"os"
	"strings"
)

func init() {
	if os.Getenv("LANGUAGE") != "" {
		return
	}
	for _, name := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		lang, _, _ := strings.Cut(v, ".")
		if (lang == "C" || lang == "POSIX") && v != lang {
			os.Setenv("LANGUAGE", "en")
		}
		return
	}
}
