#!/usr/bin/env bash
# Print the fix of every nodetgt tune check that warned or failed, as a script to review; runs nothing.
# usage: tuning/fixes.sh [nodetgt tune options, e.g. --config /etc/nodetgt.json]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${NODETGT:-$here/../bin/nodetgt.js}"
json="$(node "$bin" tune --json "$@")"
status=$?
if [ "$status" -gt 1 ]; then exit "$status"; fi
printf '%s' "$json" | node -e '
  let s = "";
  process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const { checks } = JSON.parse(s);
    console.log("#!/bin/sh\n# from nodetgt tune, " + new Date().toISOString());
    for (const c of checks.filter((x) => x.fix && (x.status === "warn" || x.status === "fail")))
      // A fix to apply elsewhere (on the initiator) is advice, not a command for this host: commented out.
      console.log(`\n# ${c.status.toUpperCase()} ${c.check} ${c.subject}: ${c.value} (expected ${c.expected})\n` +
        (c.fix.startsWith("on ") ? "# " : "") + c.fix);
  });'
exit "$status"
