/**
 * The Compose schema and our support tables stay in step:
 * - the committed validator (protocol/compose/schema-validator.js) is what scripts/compose-schema.ts
 *   makes from the schema;
 * - every key the schema knows in a mapping we read is in exactly one class of its table
 *   (supported, ignored, refused), and no table lists a key the schema does not know;
 * - README.md's matrix is the one the tables print.
 * The schema is read from ../shared/compose-spec (not copied into the project); where that folder
 * is absent the first two checks say so and are skipped.
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { describe, test } from 'node:test'
import { TABLES } from '../../protocol/compose.ts'
import { DEFAULT_SCHEMA, VALIDATOR_FILE, generateValidator } from '../../scripts/compose-schema.ts'
import { README, withMatrix } from '../../scripts/compose-matrix.ts'

const haveSchema = existsSync(DEFAULT_SCHEMA)
const skip = haveSchema ? false : `the Compose schema is not at ${DEFAULT_SCHEMA}: not checked here`
const schema = haveSchema ? JSON.parse(readFileSync(DEFAULT_SCHEMA, 'utf8')) as Record<string, unknown> : {}

type Node = Record<string, unknown>

function at (pointer: string): Node {
  let node: unknown = schema
  for (const seg of pointer === '' ? [] : pointer.slice(1).split('/')) node = (node as Node)[seg]
  for (let n = 0; n < 10 && typeof (node as Node).$ref === 'string'; n++) node = at(((node as Node).$ref as string).slice(1))
  return node as Node
}

describe('Compose schema', () => {
  test('the committed validator is generated from the current schema', { skip }, () => {
    const expected = generateValidator(readFileSync(DEFAULT_SCHEMA, 'utf8'))
    assert.ok(readFileSync(VALIDATOR_FILE, 'utf8') === expected, 'protocol/compose/schema-validator.js is stale: run `node scripts/compose-schema.ts`')
  })

  test('every key the schema knows is supported, ignored or refused, once', { skip }, () => {
    const problems: string[] = []
    for (const t of TABLES) {
      if (t.schema === '' && t.where !== '(top level)') continue // our own extension
      const node = at(t.schema)
      assert.equal(node.additionalProperties, false, `${t.where}: the schema is open here; unknown keys would slip through`)
      const known = Object.keys((node.properties ?? {}) as Node)
      for (const k of known) if (!Object.hasOwn(t.keys, k)) problems.push(`${t.where}.${k}: in the schema, in no class`)
      for (const k of Object.keys(t.keys)) if (!known.includes(k)) problems.push(`${t.where}.${k}: classified, unknown to the schema`)
    }
    assert.deepEqual(problems, [])
  })

  test('each class is one of three, with a reason where a key is not supported', () => {
    for (const t of TABLES) {
      for (const [k, s] of Object.entries(t.keys)) {
        assert.ok(['supported', 'ignored', 'refused'].includes(s.status), `${t.where}.${k}`)
        if (s.status !== 'supported') assert.ok(s.reason.length > 5, `${t.where}.${k} needs a reason`)
      }
    }
  })

  test("README.md's support matrix is generated from the tables", () => {
    const readme = readFileSync(README, 'utf8')
    assert.ok(readme === withMatrix(readme), 'README.md\'s Compose matrix is stale: run `node scripts/compose-matrix.ts --write`')
  })
})
