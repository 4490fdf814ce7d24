/**
 * Stage 2: Compose interpolation of every string value (`${VAR:-default}` and friends).
 *
 * Hand-written on purpose: no library implements Compose's dialect. The rules follow the
 * reference implementation, compose-spec/compose-go `template/template.go`, and
 * test/unit/compose-interpolate.test.ts runs its `template_test.go` cases:
 * - `$$` is a literal `$`; a `$` not followed by a name or `{` is kept as is (`a $ b`, `^x$`).
 * - `$NAME` / `${NAME}`: names are `[A-Za-z_][A-Za-z0-9_]*`; an unset variable gives '' (we warn).
 * - `${NAME:-d}` (unset or empty) / `${NAME-d}` (unset): default; `${NAME:+r}` / `${NAME+r}`:
 *   replacement when set (and non-empty); `${NAME:?e}` / `${NAME?e}`: an error when missing.
 *   The first operator after the name wins (`${A-x?y}` defaults to "x?y").
 * - Defaults, replacements and messages are themselves interpolated, lazily (an unused default
 *   never warns); braces nest (`${A:-{"json":1}}` defaults to `{"json":1}`).
 * - Anything else in `${…}` (`${}`, `${ A}`, `${A!}`, an unclosed `${`) is an invalid template.
 */
import type { Ctx, Obj, Path } from './types.ts'
import { describe, err, isRecord, pathKey, report, setOwn } from './types.ts'

export interface ExpandState {
  unset: string[]
  failed: string[]
  invalid?: string
}

const NAME_RE = /[A-Za-z_][A-Za-z0-9_]*/y

function readName (s: string, from: number): string | undefined {
  NAME_RE.lastIndex = from
  const m = NAME_RE.exec(s)
  return m ? m[0] : undefined
}

export function lookupVar (vars: Record<string, string>, name: string): string | undefined {
  if (!Object.hasOwn(vars, name)) return undefined
  const v = vars[name]
  return typeof v === 'string' ? v : undefined
}

/** Index of the `}` closing a `${` whose body starts at `from`: every `{` nests (compose-go's getFirstBraceClosingIndex). */
function closingBrace (s: string, from: number): number {
  let depth = 0
  for (let j = from; j < s.length; j++) {
    if (s[j] === '{') depth++
    else if (s[j] === '}') {
      if (depth === 0) return j
      depth--
    }
  }
  return -1
}

const OPERATORS = [':-', ':?', ':+', '-', '?', '+'] as const

/** Expands one string; problems are collected in `st`. */
export function expand (s: string, vars: Record<string, string>, st: ExpandState): string {
  let out = ''
  let i = 0
  while (i < s.length) {
    const dollar = s.indexOf('$', i)
    if (dollar < 0) return out + s.slice(i)
    out += s.slice(i, dollar)
    i = dollar
    const next = s[i + 1]
    if (next === '$') {
      out += '$'
      i += 2
      continue
    }
    if (next === '{') {
      const end = closingBrace(s, i + 2)
      if (end < 0) {
        st.invalid ??= s.slice(i)
        return out
      }
      out += expandBraced(s.slice(i + 2, end), vars, st)
      if (st.invalid !== undefined) return out
      i = end + 1
      continue
    }
    const name = readName(s, i + 1)
    if (name === undefined) {
      out += '$'
      i++
      continue
    }
    const v = lookupVar(vars, name)
    if (v === undefined) st.unset.push(name)
    out += v ?? ''
    i += 1 + name.length
  }
  return out
}

function expandBraced (body: string, vars: Record<string, string>, st: ExpandState): string {
  const name = readName(body, 0)
  if (name === undefined) {
    st.invalid ??= `\${${body}}`
    return ''
  }
  const rest = body.slice(name.length)
  const v = lookupVar(vars, name)
  if (rest === '') {
    if (v === undefined) st.unset.push(name)
    return v ?? ''
  }
  const op = OPERATORS.find((o) => rest.startsWith(o))
  if (op === undefined) {
    st.invalid ??= `\${${body}}`
    return ''
  }
  const arg = rest.slice(op.length)
  const set = v !== undefined
  const nonEmpty = v !== undefined && v !== ''
  switch (op) {
    case ':-':
      return nonEmpty ? v : expand(arg, vars, st)
    case '-':
      return set ? v : expand(arg, vars, st)
    case ':+':
      return nonEmpty ? expand(arg, vars, st) : ''
    case '+':
      return set ? expand(arg, vars, st) : ''
    case ':?':
    case '?': {
      if (op === ':?' ? nonEmpty : set) return v ?? ''
      const detail = expand(arg, vars, st)
      st.failed.push(`required variable ${name} is ${set ? 'empty' : 'not set'}${detail ? `: ${detail}` : ''}`)
      return ''
    }
  }
}

function interpolate (ctx: Ctx, s: string, path: Path): string {
  if (!s.includes('$')) return s
  const st: ExpandState = { unset: [], failed: [] }
  const out = expand(s, ctx.variables, st)
  if (st.invalid !== undefined) {
    err(ctx, path, `invalid interpolation ${JSON.stringify(st.invalid)} in ${describe(s)}; write a literal $ as $$`)
    return s
  }
  for (const f of st.failed) err(ctx, path, f)
  for (const name of st.unset) {
    const key = `${pathKey(path)}\u0001${name}`
    if (ctx.unsetWarned.has(key)) continue
    ctx.unsetWarned.add(key)
    report(ctx, 'warning', path, `variable ${name} is not set; substituting an empty string`)
  }
  return out
}

/** Interpolates every string value (not keys, not `x-*` extensions), as Compose does before validating. */
export function interpolateTree (ctx: Ctx, v: unknown, path: Path, seen: Set<object> = new Set()): unknown {
  if (typeof v === 'string') return interpolate(ctx, v, path)
  if (Array.isArray(v) || isRecord(v)) {
    if (seen.has(v)) {
      err(ctx, path, 'recursive YAML alias')
      return null
    }
    seen.add(v)
    let out: unknown
    if (Array.isArray(v)) out = v.map((item, i) => interpolateTree(ctx, item, [...path, i], seen))
    else {
      const o: Obj = {}
      for (const k of Object.keys(v)) setOwn(o, k, k.startsWith('x-') ? v[k] : interpolateTree(ctx, v[k], [...path, k], seen))
      out = o
    }
    seen.delete(v)
    return out
  }
  return v
}
