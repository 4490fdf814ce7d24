/**
 * `.env` files (env_file:), parsed by Compose's rules.
 *
 * Hand-written: neither `dotenv` nor Node's `util.parseEnv` reads Compose's dialect (both were
 * tried on the cases of test/unit/compose-envfile.test.ts, which pins util.parseEnv's). Both cut `A=a#b` to "a" (Compose keeps
 * "a#b": a comment starts at a blank followed by `#`); in `D="say \"hi\""` dotenv keeps the
 * backslashes and util.parseEnv ends the value at the first `\"`; neither interpolates `${VAR}` nor
 * takes a bare `KEY` from the environment; both skip a malformed line or an unclosed quote without
 * a word, where we refuse it with its line number. Swapping either in would change the
 * environment of replicas already running. The rules follow compose-spec/compose-go
 * `dotenv/parser.go`:
 * - `KEY=VALUE` lines, `#` comment lines, an optional `export ` prefix, blanks around `=`;
 * - single quotes are literal; double quotes take `\n`, `\t`, `\r` and `\<char>` escapes and may
 *   span lines (compose-go also knows `\a`, `\b`, `\f`, `\v` and octal: not here); an unquoted
 *   value ends at ` #` and is trimmed;
 * - `${VAR}` interpolation outside single quotes, from the variables first, then from earlier
 *   keys of the same file;
 * - a bare `KEY` takes its value from the variables, or is dropped.
 */
import { describe } from './types.ts'
import type { ExpandState } from './interpolate.ts'
import { expand, lookupVar } from './interpolate.ts'

export const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/

export interface EnvFileParse {
  entries: [string, string][]
  errors: { line: number; message: string }[]
  unset: string[]
}

function findClosingQuote (body: string, q: string): number {
  if (q === "'") return body.indexOf("'")
  for (let j = 0; j < body.length; j++) {
    if (body[j] === '\\') j++
    else if (body[j] === '"') return j
  }
  return -1
}

function unescapeDouble (s: string): string {
  return s.replace(/\\(.)/gs, (_m, c: string) => {
    switch (c) {
      case 'n':
        return '\n'
      case 't':
        return '\t'
      case 'r':
        return '\r'
      case '$':
        return '$$'
      default:
        return c
    }
  })
}

/**
 * Parses an env file: `KEY=VALUE` lines, `#` comments, optional `export `, single quotes
 * (literal), double quotes (escapes, may span lines), inline ` #` comments after unquoted
 * values, and `${VAR}` interpolation outside single quotes (variables first, then earlier keys
 * of the same file). A bare `KEY` takes its value from the variables, or is dropped.
 */
export function parseEnvFile (content: string, variables: Record<string, string> = {}): EnvFileParse {
  const entries = new Map<string, string>()
  const errors: EnvFileParse['errors'] = []
  const unset: string[] = []
  const lines = content.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/)
  const expandValue = (raw: string, lineNo: number): string => {
    if (!raw.includes('$')) return raw
    const vars: Record<string, string> = Object.create(null) as Record<string, string>
    for (const [k, val] of entries) vars[k] = val
    for (const k of Object.keys(variables)) {
      const val = lookupVar(variables, k)
      if (val !== undefined) vars[k] = val
    }
    const st: ExpandState = { unset: [], failed: [] }
    const out = expand(raw, vars, st)
    if (st.invalid !== undefined) return raw
    unset.push(...st.unset)
    for (const f of st.failed) errors.push({ line: lineNo, message: f })
    return out
  }
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1
    let t = lines[i].replace(/^[ \t]+/, '')
    if (t === '' || t.startsWith('#')) continue
    t = t.replace(/^export[ \t]+/, '')
    const eq = t.indexOf('=')
    const key = (eq < 0 ? t : t.slice(0, eq)).trim()
    if (!ENV_KEY_RE.test(key)) {
      errors.push({ line: lineNo, message: `invalid variable name ${describe(key)}` })
      continue
    }
    if (eq < 0) {
      const val = lookupVar(variables, key)
      if (val !== undefined) entries.set(key, val)
      continue
    }
    const rest = t.slice(eq + 1).replace(/^[ \t]+/, '')
    let value: string
    if (rest.startsWith("'") || rest.startsWith('"')) {
      const q = rest[0]
      let body = rest.slice(1)
      let end = findClosingQuote(body, q)
      while (end < 0 && i + 1 < lines.length) {
        i++
        body += `\n${lines[i]}`
        end = findClosingQuote(body, q)
      }
      if (end < 0) {
        errors.push({ line: lineNo, message: `unterminated ${q === '"' ? 'double' : 'single'} quote` })
        continue
      }
      const inner = body.slice(0, end)
      value = q === "'" ? inner : expandValue(unescapeDouble(inner), lineNo)
    } else {
      const comment = /[ \t]#/.exec(rest)
      value = expandValue((comment ? rest.slice(0, comment.index) : rest).trim(), lineNo)
    }
    entries.set(key, value)
  }
  return { entries: [...entries], errors, unset }
}

