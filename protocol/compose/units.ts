/**
 * Durations and byte sizes as Compose writes them. Hand-written: both are a few lines, and the
 * npm packages for them (ms, bytes, parse-duration) follow other rules (decimal units, "1d").
 */

const DURATION_UNITS_NS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 }
const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y

/**
 * A duration ("1m30s", "10s", "500ms", "1.5h") in nanoseconds. Go's `time.ParseDuration`, which
 * Compose uses, minus negative values: a sequence of decimal numbers each with a unit
 * (ns, us/µs, ms, s, m, h), or "0" alone.
 */
export function parseDurationNs (s: string): number | undefined {
  const t = s.trim()
  if (t === '0' || t === '+0') return 0
  let i = t.startsWith('+') ? 1 : 0
  if (i >= t.length) return undefined
  let total = 0
  while (i < t.length) {
    DURATION_PART.lastIndex = i
    const m = DURATION_PART.exec(t)
    if (!m) return undefined
    total += Number(m[1]) * (DURATION_UNITS_NS[m[2]] ?? NaN)
    i = DURATION_PART.lastIndex
  }
  return Number.isFinite(total) ? total : undefined
}

const BYTE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }

/**
 * A byte size ("512M", "1g", "100k", "1.5GB", "64MiB", "1024") in bytes. Docker's
 * `units.RAMInBytes` (github.com/docker/go-units), which Compose uses for memory: binary units
 * whatever the spelling (k = KB = KiB = 1024), case-insensitive, an optional space before the
 * unit; fractions are floored to whole bytes.
 */
export function parseBytes (s: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?) ?([kmgtp])?i?b?\s*$/i.exec(s)
  if (!m) return undefined
  const n = Math.floor(Number(m[1]) * (BYTE_UNITS[(m[2] ?? '').toLowerCase()] ?? NaN))
  return Number.isSafeInteger(n) ? n : undefined
}
