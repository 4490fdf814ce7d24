/**
 * Readers for the scalar fields of a schema-valid file: the schema has checked the type, these
 * check the value (ranges, units, syntax) and report what is wrong with it.
 */
import type { Ctx, Path } from './types.ts'
import { describe, err, pathKey } from './types.ts'
import { shellSplit } from './shell.ts'
import { parseBytes, parseDurationNs } from './units.ts'

/** A string field (the schema has checked it; anything else is reported, never thrown on). */
export function str (ctx: Ctx, v: unknown, path: Path): string | undefined {
  if (typeof v === 'string') return v
  err(ctx, path, `must be a string, got ${describe(v)}`)
  return undefined
}

/** Text of a scalar as written (`1.10` stays "1.10" in an environment value). */
export function scalarText (ctx: Ctx, v: string | number | boolean, path: Path): string {
  if (typeof v === 'string') return v
  const e = ctx.positions.get(pathKey(path))
  if (e !== undefined && e.raw !== undefined && Object.is(e.scalar, v)) return e.raw
  return String(v)
}

/** An integer field: a number, or the text of one (`${N:-3}` leaves a string). */
export function int (ctx: Ctx, v: unknown, path: Path, min: number, max: number, expected?: string): number | undefined {
  let n: number | undefined
  if (typeof v === 'number') n = v
  else if (typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v)) n = Number(v)
  const what = expected ?? (min === 0 ? 'a non-negative integer' : `an integer of at least ${min}`)
  if (n === undefined || !Number.isSafeInteger(n) || n < min) {
    err(ctx, path, `must be ${what}, got ${describe(v)}`)
    return undefined
  }
  if (n > max) {
    err(ctx, path, expected ? `must be ${what}, got ${describe(v)}` : `must be at most ${max}, got ${describe(v)}`)
    return undefined
  }
  return n
}

/** A boolean field: true/false, or their text. */
export function bool (ctx: Ctx, v: unknown, path: Path): boolean | undefined {
  if (typeof v === 'boolean') return v
  if (typeof v === 'string') {
    const l = v.trim().toLowerCase()
    if (l === 'true') return true
    if (l === 'false') return false
  }
  err(ctx, path, `must be true or false, got ${describe(v)}`)
  return undefined
}

/** A duration field in milliseconds (see units.ts). */
export function duration (ctx: Ctx, v: unknown, path: Path): number | undefined {
  const ns = typeof v === 'string' ? parseDurationNs(v) : undefined
  if (ns === undefined) {
    err(ctx, path, `must be a duration like "10s", "1m30s" or "500ms", got ${describe(v)}`)
    return undefined
  }
  const ms = Math.round(ns / 1e6)
  if (!Number.isSafeInteger(ms)) {
    err(ctx, path, `duration too large: ${describe(v)}`)
    return undefined
  }
  return ms
}

/** A byte size field: a number of bytes or a size string (see units.ts). */
export function bytes (ctx: Ctx, v: unknown, path: Path): number | undefined {
  let n: number | undefined
  if (typeof v === 'number') n = Number.isSafeInteger(v) && v >= 0 ? v : undefined
  else if (typeof v === 'string') n = parseBytes(v)
  if (n === undefined) err(ctx, path, `must be a size like "512M", "1g", "100k" or "1.5GB", got ${describe(v)}`)
  return n
}

/** A CPU count: a number or its text. */
export function cpus (ctx: Ctx, v: unknown, path: Path): number | undefined {
  let n: number | undefined
  if (typeof v === 'number') n = v
  else if (typeof v === 'string' && /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(v)) n = Number(v)
  if (n === undefined || !Number.isFinite(n) || n < 0 || n > 1e6) {
    err(ctx, path, `must be a non-negative number of CPUs like 0.5 or "2", got ${describe(v)}`)
    return undefined
  }
  return n
}

/** A command: a list of strings as is, or a string split into words (shell.ts). */
export function commandList (ctx: Ctx, v: unknown, path: Path): string[] | undefined {
  if (Array.isArray(v)) return v.map(String)
  if (typeof v !== 'string') return undefined
  const r = shellSplit(v)
  if ('error' in r) {
    err(ctx, path, `invalid command string: ${r.error}`)
    return undefined
  }
  return r.words
}
