// Package triggers violates the rules: it imports core.
package triggers

import _ "example.org/bad/core"
