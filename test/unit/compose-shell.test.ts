/** The project's one shell-word splitter (protocol/compose/shell.ts), in its two uses. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { shellSplit, splitStatements } from '../../protocol/compose.ts'

describe('shell words', () => {
  test('Compose commands: go-shellwords rules, no expansion', () => {
    assert.deepEqual(shellSplit(`echo "hello world" 'a b' c\\ d "q\\"x" ''`), { words: ['echo', 'hello world', 'a b', 'c d', 'q"x', ''] })
    // $, ${…}, # and globs are text: the container's shell sees them (shell-quote would expand or drop them)
    assert.deepEqual(shellSplit('sh -c "echo ${HOME} $USER #1 *.txt"'), { words: ['sh', '-c', 'echo ${HOME} $USER #1 *.txt'] })
    assert.deepEqual(shellSplit('a\nb'), { words: ['a', 'b'] })
    for (const [s, e] of [['"abc', 'unterminated double quote'], ["it's", 'unterminated single quote']]) assert.deepEqual(shellSplit(s), { error: e })
    for (const op of [';', '&&', '|', '||', '<', '>', '&']) assert.match((shellSplit(`a ${op} b`) as { error: string }).error, new RegExp(`^unquoted shell operator "\\${op[0]}"`))
    assert.deepEqual(shellSplit('echo "a; b|c"'), { words: ['echo', 'a; b|c'] })
  })

  test('in-memory runtime scripts: statements at ;, && and newlines', () => {
    assert.deepEqual(splitStatements(`echo "a; b" 'c'; sleep 1 && exit 3\nfalse`), [['echo', 'a; b', 'c'], ['sleep', '1'], ['exit', '3'], ['false']])
    assert.deepEqual(splitStatements('echo three >&2; exit 0'), [['echo', 'three', '>&2'], ['exit', '0']])
    assert.deepEqual(splitStatements('  ;; '), [])
  })
})
