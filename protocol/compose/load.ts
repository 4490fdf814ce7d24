/**
 * Stage 1: text → plain data plus the line/column of every key and value.
 *
 * The YAML library does the parsing, duplicate-key detection and alias expansion; this stage adds
 * the limits that keep hostile input cheap (file size, alias expansions) and turns every problem
 * into an issue with a position.
 */
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, visit } from 'yaml'
import type { ComposeIssue, Path, Pos } from './types.ts'
import { describe, pathKey } from './types.ts'

/** Largest Compose file accepted: far above any real stack (a 50-service file is ~30 KB). */
export const MAX_COMPOSE_BYTES = 1024 * 1024

/**
 * Most alias dereferences one document may make while it is turned into data (the YAML library's
 * `maxAliasCount`): real files use a few dozen `<<: *defaults`; "billion laughs" needs millions.
 */
export const MAX_ALIAS_EXPANSIONS = 1000

export interface PosEntry {
  key?: Pos
  value?: Pos
  /** source text of a plain scalar and its parsed value: `1.10` stays "1.10" in env values */
  raw?: string
  scalar?: unknown
}

export type Loaded =
  | { ok: true, data: unknown, positions: Map<string, PosEntry>, issues: ComposeIssue[] }
  | { ok: false, issues: ComposeIssue[] }

export function load (text: string): Loaded {
  const issues: ComposeIssue[] = []
  const lc = new LineCounter()
  const issue = (severity: 'error' | 'warning', pos: Pos | undefined, message: string): void => {
    issues.push({ severity, path: '', ...(pos ? { line: pos.line, col: pos.col } : {}), message })
  }
  const bytes = Buffer.byteLength(text, 'utf8')
  if (bytes > MAX_COMPOSE_BYTES) {
    issue('error', positionOfByte(text, MAX_COMPOSE_BYTES), `file too large: ${bytes} bytes, at most ${MAX_COMPOSE_BYTES} (1 MiB)`)
    return { ok: false, issues }
  }
  const doc = parseDocument(text, { lineCounter: lc, merge: true, prettyErrors: false, uniqueKeys: true, logLevel: 'silent' })
  const at = (offset: number | undefined): Pos | undefined => (typeof offset === 'number' ? lc.linePos(offset) : undefined)
  for (const e of doc.errors) {
    const start = e.pos?.[0]
    // "Map keys must be unique" does not say which key: the source does
    const message = e.code === 'DUPLICATE_KEY' && start !== undefined
      ? `duplicate key ${describe(keyText(text, start))}`
      : `invalid YAML: ${e.message}`
    issue('error', at(start), message)
  }
  for (const w of doc.warnings) issue('warning', at(w.pos?.[0]), `YAML: ${w.message}`)
  if (doc.errors.length > 0) return { ok: false, issues }

  let data: unknown
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_EXPANSIONS })
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    if (/alias count/i.test(message)) {
      issue('error', at(firstAliasOffset(doc)), `YAML aliases expand too much (more than ${MAX_ALIAS_EXPANSIONS} expansions); is this an alias bomb?`)
    } else {
      issue('error', undefined, `invalid YAML: ${message}`)
    }
    return { ok: false, issues }
  }
  return { ok: true, data, positions: indexPositions(doc.contents, text, lc), issues }
}

function keyText (text: string, offset: number): string {
  const m = /^(?:"((?:[^"\\]|\\.)*)"|'((?:[^']|'')*)'|([^:\n]*?))\s*:/.exec(text.slice(offset, offset + 200))
  if (m === null) return text.slice(offset, offset + 40).split('\n')[0]
  return m[1] ?? m[2]?.replace(/''/g, "'") ?? m[3] ?? ''
}

function firstAliasOffset (doc: ReturnType<typeof parseDocument>): number | undefined {
  let offset: number | undefined
  visit(doc, {
    Alias (_k, node) {
      offset = node.range?.[0]
      return visit.BREAK
    }
  })
  return offset
}

/** Line and column (1-based) of the character that holds byte `limit` of the UTF-8 text. */
function positionOfByte (text: string, limit: number): Pos {
  let bytes = 0
  let line = 1
  let lineStart = 0
  let i = 0
  for (; i < text.length && bytes < limit; i++) {
    const c = text.charCodeAt(i)
    bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c < 0xdc00 ? 4 : c >= 0xdc00 && c < 0xe000 ? 0 : 3
    if (c === 10) {
      line++
      lineStart = i + 1
    }
  }
  return { line, col: i - lineStart + 1 }
}

/** Line/col of every key and value in the document, by path. Aliases and merges are not entered. */
function indexPositions (root: unknown, text: string, lc: LineCounter): Map<string, PosEntry> {
  const out = new Map<string, PosEntry>()
  const at = (offset: number): Pos => lc.linePos(offset)
  const entry = (path: Path): PosEntry => {
    const k = pathKey(path)
    let e = out.get(k)
    if (e === undefined) {
      e = {}
      out.set(k, e)
    }
    return e
  }
  const recordValue = (node: unknown, path: Path): void => {
    if (node === null || typeof node !== 'object') return
    const range = (node as { range?: [number, number, number] }).range
    if (range) {
      const e = entry(path)
      e.value = at(range[0])
      if (isScalar(node) && node.type === 'PLAIN') {
        e.raw = text.slice(range[0], range[1])
        e.scalar = node.value
      }
    }
    walk(node, path)
  }
  const walk = (node: unknown, path: Path): void => {
    if (isAlias(node)) return
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = pair.key
        if (!isScalar(key) || typeof key.value === 'symbol') continue
        const p = [...path, String(key.value)]
        if (key.range) entry(p).key = at(key.range[0])
        recordValue(pair.value, p)
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => recordValue(item, [...path, i]))
    }
  }
  recordValue(root, [])
  return out
}
