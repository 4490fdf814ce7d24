/**
 * The project's one shell-word splitter: Compose's shell-form `command:` / `entrypoint:` strings,
 * and the in-memory runtime's scripts (node/runtime/memory.ts).
 *
 * Compose splits with github.com/mattn/go-shellwords (environment expansion off): blanks separate
 * words; single quotes are literal; in double quotes a backslash escapes `"`, `\`, `$`, a
 * backquote or a newline; outside quotes it escapes any character; `$VAR`, `#` and globs are
 * plain text. `shell-quote`, the npm splitter, is a different dialect: it expands `$VAR` and
 * `${VAR}` (`sh -c "echo $${HOME}"` would lose its braces, changing specs already deployed),
 * reads `#` as a comment, and accepts an unclosed quote without a word.
 *
 * go-shellwords stops at the first unquoted `;`, `&`, `|`, `<` or `>` and drops the rest of the
 * line; `splitWords` reports it instead. `splitStatements` splits at `;`, `&&` and newlines.
 */

export type Token = { word: string } | { op: string }

/**
 * Words and unquoted operators: with `ops` 'all', `;`, `&&`, `&`, `||`, `|`, `<`, `>` and newline;
 * with 'separators', only `;`, `&&` and newline (the others are plain characters).
 */
export function tokenize (s: string, ops: 'all' | 'separators' = 'all'): { tokens: Token[] } | { error: string } {
  const tokens: Token[] = []
  let cur = ''
  let inWord = false
  const end = (): void => {
    if (inWord) tokens.push({ word: cur })
    cur = ''
    inWord = false
  }
  let i = 0
  while (i < s.length) {
    const c = s[i]
    if (c === ' ' || c === '\t' || c === '\r') {
      end()
      i++
    } else if (c === "'") {
      const close = s.indexOf("'", i + 1)
      if (close < 0) return { error: 'unterminated single quote' }
      cur += s.slice(i + 1, close)
      inWord = true
      i = close + 1
    } else if (c === '"') {
      inWord = true
      i++
      let closed = false
      while (i < s.length) {
        const d = s[i]
        if (d === '"') {
          closed = true
          i++
          break
        }
        if (d === '\\' && i + 1 < s.length && '"\\$`\n'.includes(s[i + 1])) {
          if (s[i + 1] !== '\n') cur += s[i + 1]
          i += 2
          continue
        }
        cur += d
        i++
      }
      if (!closed) return { error: 'unterminated double quote' }
    } else if (c === '\\') {
      if (i + 1 >= s.length) cur += '\\'
      else if (s[i + 1] !== '\n') cur += s[i + 1]
      inWord = true
      i += 2
    } else if (c === ';' || c === '\n' || (ops === 'all' ? '&|<>'.includes(c) : s.startsWith('&&', i))) {
      end()
      const two = s.slice(i, i + 2)
      const op = two === '&&' || two === '||' ? two : c
      tokens.push({ op })
      i += op.length
    } else {
      cur += c
      inWord = true
      i++
    }
  }
  end()
  return { tokens }
}

/** A command string as Compose splits it; shell operators are an error (write `["sh", "-c", "..."]`). */
export function shellSplit (s: string): { words: string[] } | { error: string } {
  const r = tokenize(s)
  if ('error' in r) return r
  const words: string[] = []
  for (const t of r.tokens) {
    if ('op' in t) {
      if (t.op === '\n') continue
      return { error: `unquoted shell operator "${t.op[0]}"; write the command as a list, e.g. ["sh", "-c", "..."]` }
    }
    words.push(t.word)
  }
  return { words }
}

/** A script as statements of words, split at `;`, `&&` and newlines; quotes group words. Not a shell. */
export function splitStatements (script: string): string[][] {
  const r = tokenize(script, 'separators')
  if ('error' in r) return [script.split(/\s+/).filter((w) => w !== '')]
  const statements: string[][] = [[]]
  for (const t of r.tokens) {
    if ('word' in t) statements[statements.length - 1].push(t.word)
    else statements.push([])
  }
  return statements.filter((s) => s.length > 0)
}
