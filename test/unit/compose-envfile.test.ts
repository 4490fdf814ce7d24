/**
 * `.env` files as Compose reads them: the fixtures of the reference parser's tests
 * (compose-spec/compose-go, dotenv/fixtures and godotenv_test.go, Apache-2.0) rewritten here, the
 * cases where `dotenv` / Node's `util.parseEnv` read them differently (why protocol/compose/envfile.ts
 * is hand-written), and our known differences from compose-go.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseEnv } from 'node:util'
import { parseEnvFile } from '../../protocol/compose.ts'

const lines = (...l: string[]): string => `${l.join('\n')}\n`
const values = (content: string, variables: Record<string, string> = {}): Record<string, string> => {
  const r = parseEnvFile(content, variables)
  assert.deepEqual(r.errors, [])
  return Object.fromEntries(r.entries)
}

describe('env files (compose-go dotenv fixtures)', () => {
  test('plain.env', () => {
    assert.deepEqual(values(lines('OPTION_A=1', 'OPTION_B=2', 'OPTION_C= 3', 'OPTION_D =4', 'OPTION_E = 5', 'OPTION_F = ', 'OPTION_G=', 'OPTION_H = my string # Inline comment')),
      { OPTION_A: '1', OPTION_B: '2', OPTION_C: '3', OPTION_D: '4', OPTION_E: '5', OPTION_F: '', OPTION_G: '', OPTION_H: 'my string' })
  })

  test('exported.env, equals.env, special.env', () => {
    assert.deepEqual(values(lines('export OPTION_A=2', "export OPTION_B='\\n'")), { OPTION_A: '2', OPTION_B: '\\n' })
    assert.deepEqual(values(lines("export OPTION_A='postgres://localhost:5432/database?sslmode=disable'")), { OPTION_A: 'postgres://localhost:5432/database?sslmode=disable' })
    assert.deepEqual(values(lines('VAR.WITH.DOTS=dots', 'VAR_WITH_UNDERSCORES=underscores', 'VAR-WITH-DASHES=dashes')), { 'VAR.WITH.DOTS': 'dots', VAR_WITH_UNDERSCORES: 'underscores', 'VAR-WITH-DASHES': 'dashes' })
  })

  test('quoted.env', () => {
    const content = lines("OPTION_A='1'", "OPTION_B='2'", "OPTION_C=''", "OPTION_D='\\n'", 'OPTION_E="1"', 'OPTION_F="2"', 'OPTION_G=""', 'OPTION_H="\\n"',
      `OPTION_I = "echo 'asd'" # Inline comment`, "OPTION_J = 'first line", 'second line', 'third line', "and so on'", 'OPTION_Z = "last value"')
    assert.deepEqual(values(content), {
      OPTION_A: '1', OPTION_B: '2', OPTION_C: '', OPTION_D: '\\n', OPTION_E: '1', OPTION_F: '2', OPTION_G: '', OPTION_H: '\n',
      OPTION_I: "echo 'asd'", OPTION_J: 'first line\nsecond line\nthird line\nand so on', OPTION_Z: 'last value'
    })
  })

  test('unquoted.env', () => {
    assert.deepEqual(values(lines('OPTION_A = "some quoted phrase"', 'OPTION_B=first one with an unquoted phrase', 'OPTION_C = then another one with an unquoted phrase', 'OPTION_E = "then another one quoted phrase"')),
      { OPTION_A: 'some quoted phrase', OPTION_B: 'first one with an unquoted phrase', OPTION_C: 'then another one with an unquoted phrase', OPTION_E: 'then another one quoted phrase' })
  })

  test('substitutions.env: earlier keys, and the environment before them', () => {
    const content = lines('OPTION_A=1', 'OPTION_B=${OPTION_A}', 'OPTION_C=$OPTION_B', 'OPTION_D=${OPTION_A}_${OPTION_B}', 'OPTION_E=${OPTION_NOT_DEFINED}')
    assert.deepEqual(values(content), { OPTION_A: '1', OPTION_B: '1', OPTION_C: '1', OPTION_D: '1_1', OPTION_E: '' })
    assert.deepEqual(values(content, { OPTION_A: '5' }), { OPTION_A: '1', OPTION_B: '5', OPTION_C: '5', OPTION_D: '5_5', OPTION_E: '' })
  })
})

describe('where the npm and Node parsers read another dialect', () => {
  const content = lines('A=a#b', 'D="say \\"hi\\""', 'E=${A}')
  test('Compose: a comment needs a blank before #, \\" unescapes, ${} interpolates', () => {
    assert.deepEqual(values(content), { A: 'a#b', D: 'say "hi"', E: 'a#b' })
  })

  test('util.parseEnv reads the same text otherwise (if this fails, it may now fit)', () => {
    const r = parseEnv(content)
    assert.equal(r.A, 'a')
    assert.notEqual(r.D, 'say "hi"')
    assert.equal(r.E, '${A}')
  })

  test('malformed lines are refused with their line number, not skipped', () => {
    assert.deepEqual(parseEnvFile(lines('OK=1', 'not valid')).errors, [{ line: 2, message: 'invalid variable name "not valid"' }])
    assert.deepEqual(parseEnvFile('X="open').errors, [{ line: 1, message: 'unterminated double quote' }])
  })
})

describe('known differences from compose-go', () => {
  test("a \\' inside single quotes ends the value (compose-go unescapes it: Let's go!)", () => {
    assert.equal(values("OPTION_K='Let\\'s go!'").OPTION_K, 'Let\\')
  })

  test('a key starting with a digit is refused (compose-go takes "456")', () => {
    assert.deepEqual(parseEnvFile('456 = ABC').errors, [{ line: 1, message: 'invalid variable name "456"' }])
  })
})
