/**
 * Compose interpolation against the cases of the reference implementation's tests
 * (compose-spec/compose-go, template/template_test.go, Apache-2.0), rewritten here. Where
 * compose-go says "required variable X is missing a value", we say "is not set" or "is empty".
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { expand } from '../../protocol/compose/interpolate.ts'
import type { ExpandState } from '../../protocol/compose/interpolate.ts'

// compose-go's `defaults` mapping
const defaults: Record<string, string> = { FOO: 'first', BAR: '', JSON: '{"json":2}' }

function sub (template: string, vars: Record<string, string> = defaults): { out: string, st: ExpandState } {
  const st: ExpandState = { unset: [], failed: [] }
  return { out: expand(template, vars, st), st }
}

function ok (template: string, expected: string, vars?: Record<string, string>): void {
  const { out, st } = sub(template, vars)
  assert.equal(st.invalid, undefined, `${template}: invalid`)
  assert.deepEqual(st.failed, [], `${template}: failed`)
  assert.equal(out, expected, template)
}

function required (template: string, variable: string, reason?: string): void {
  const { st } = sub(template)
  assert.equal(st.failed.length, 1, template)
  assert.match(st.failed[0], new RegExp(`^required variable ${variable} is (not set|empty)${reason === undefined ? '$' : `: ${reason}$`}`), template)
}

describe('Compose interpolation (compose-go template_test.go)', () => {
  test('TestEscaped, TestSubstituteNoMatch', () => {
    ok('$${foo}', '${foo}')
    ok('foo', 'foo')
  })

  test('TestUnescaped: a $ that starts no name is kept', () => {
    for (const t of ['a $ string', '^REGEX$', '$}', '$']) ok(t, t)
  })

  test('TestInvalid', () => {
    for (const t of ['${', '${}', '${ }', '${ foo}', '${foo }', '${foo!}']) assert.notEqual(sub(t).st.invalid, undefined, t)
  })

  test('TestNonBraced, TestNoValueNoDefault, TestValueNoDefault', () => {
    ok('$FOO-bar', 'first-bar')
    for (const t of ['This ${missing} var', 'This ${BAR} var']) ok(t, 'This  var')
    for (const t of ['This $FOO var', 'This ${FOO} var']) ok(t, 'This first var')
  })

  test('TestNoValueWithDefault and soft/hard defaults', () => {
    for (const t of ['ok ${missing:-def}', 'ok ${missing-def}']) ok(t, 'ok def')
    ok('ok ${BAR:-def}', 'ok def') // TestEmptyValueWithSoftDefault
    ok('ok ${FOO:-def}', 'ok first') // TestValueWithSoftDefault
    ok('ok ${BAR-def}', 'ok ') // TestEmptyValueWithHardDefault
    ok('ok ${BAR:-/non:-alphanumeric}', 'ok /non:-alphanumeric') // TestNonAlphanumericDefault
  })

  test('TestLazyDefaultDoesNotWarn, TestLazyDefaultWarnsWhenUsed, TestLazyRequiredMessageDoesNotWarn', () => {
    const a = sub('${A:+${A},}B')
    assert.equal(a.out, 'B')
    assert.deepEqual(a.st.unset, [])
    const b = sub('${A:-${B}}')
    assert.equal(b.out, '')
    assert.deepEqual(b.st.unset, ['B'])
    const c = sub('${A?${B}}', { A: 'value' })
    assert.equal(c.out, 'value')
    assert.deepEqual(c.st.unset, [])
  })

  test('presence values (:+ and +)', () => {
    ok('ok ${UNSET_VAR:+presence_value}', 'ok ')
    ok('ok ${UNSET_VAR+presence_value}', 'ok ')
    ok('ok ${FOO:+presence_value}', 'ok presence_value')
    ok('ok ${FOO+presence_value}', 'ok presence_value')
    ok('ok ${BAR+presence_value}', 'ok presence_value')
    ok('ok ${BAR:+presence_value}', 'ok ')
  })

  test('TestInterpolationExternalInterference', () => {
    const cases: [string, string][] = [
      ['-ok ${BAR:-defaultValue}', '-ok defaultValue'],
      ['+ok ${UNSET:-${BAR-defaultValue}}', '+ok '],
      ['-ok ${FOO:-defaultValue}', '-ok first'],
      [':-ok ${UNSET-defaultValue}', ':-ok defaultValue'],
      [':-ok ${BAR-defaultValue}', ':-ok '],
      [':?ok ${BAR-defaultValue}', ':?ok '],
      [':?ok ${BAR:-defaultValue}', ':?ok defaultValue'],
      [':+ok ${BAR:-defaultValue}', ':+ok defaultValue'],
      ['+ok ${BAR-defaultValue}', '+ok '],
      ['?ok ${BAR:-defaultValue}', '?ok defaultValue']
    ]
    for (const [t, e] of cases) ok(t, e)
  })

  test('TestDefaultsWithNestedExpansion', () => {
    const cases: [string, string][] = [
      ['ok ${UNSET_VAR-$FOO}', 'ok first'],
      ['ok ${UNSET_VAR-${FOO}}', 'ok first'],
      ['ok ${UNSET_VAR-${FOO} ${FOO}}', 'ok first first'],
      ['ok ${BAR:-$FOO}', 'ok first'],
      ['ok ${BAR:-${FOO}}', 'ok first'],
      ['ok ${BAR:-${FOO} ${FOO}}', 'ok first first'],
      ['ok ${BAR+$FOO}', 'ok first'],
      ['ok ${BAR+$FOO ${FOO:+second}}', 'ok first second']
    ]
    for (const [t, e] of cases) ok(t, e)
  })

  test('TestMandatoryVariableErrors (and WithNestedExpansion)', () => {
    required('not ok ${UNSET_VAR:?Mandatory Variable Unset}', 'UNSET_VAR', 'Mandatory Variable Unset')
    required('not ok ${BAR:?Mandatory Variable Empty}', 'BAR', 'Mandatory Variable Empty')
    required('not ok ${UNSET_VAR:?}', 'UNSET_VAR')
    required('not ok ${UNSET_VAR?Mandatory Variable Unset}', 'UNSET_VAR', 'Mandatory Variable Unset')
    required('not ok ${UNSET_VAR?}', 'UNSET_VAR')
    required('not ok ${UNSET_VAR:?Mandatory Variable ${FOO}}', 'UNSET_VAR', 'Mandatory Variable first')
    required('not ok ${UNSET_VAR?Mandatory Variable ${FOO}}', 'UNSET_VAR', 'Mandatory Variable first')
  })

  test('TestDefaultsForMandatoryVariables', () => {
    ok('ok ${FOO:?err}', 'ok first')
    ok('ok ${FOO?err}', 'ok first')
    ok('ok ${BAR?err}', 'ok ')
    ok('ok ${SUBDOMAIN:-redis}.${FOO:?}', 'ok redis.first') // from TestSubstituteWithReplacementFunc
  })

  test('TestPrecedence: the first operator wins', () => {
    required('${UNSET_VAR?bar-baz}', 'UNSET_VAR', 'bar-baz')
    ok('${UNSET_VAR-myerror?msg}', 'myerror?msg')
    ok('${FOO?bar-baz}', 'first')
    ok('${BAR:-default_value_for_empty_var}', 'default_value_for_empty_var')
    ok('${UNSET_VAR-default_value_for_unset_var}', 'default_value_for_unset_var')
  })

  test('TestSubstitutionFunctionChoice', () => {
    // which operator applies, seen through its effect with VARNAME unset, then set to "x"
    const unset: [string, string | null][] = [
      ['VARNAME:?val?ue', null], ['VARNAME?val:?ue', null], ['VARNAME?va-lu+e:?e', null], ['VARNAME?va+lu-e:?e', null],
      ['VARNAME:-value', 'value'], ['VARNAME-va:-lu:?e', 'va:-lu:?e'], ['VARNAME-va+lu?e', 'va+lu?e'], ['VARNAME-va?lu+e', 'va?lu+e'],
      ['VARNAME:+va:?lu:-e', ''], ['VARNAME+va:+lue', ''], ['VARNAME+va?lu-e', ''], ['VARNAME+va-lu?e', '']
    ]
    for (const [body, expected] of unset) {
      const { out, st } = sub(`\${${body}}`, {})
      if (expected === null) assert.equal(st.failed.length, 1, body)
      else assert.equal(out, expected, body)
      assert.equal(sub(`\${${body}}`, { VARNAME: 'x' }).out, body.includes('+') && /^VARNAME:?\+/.test(body) ? body.replace(/^VARNAME:?\+/, '') : 'x', body)
    }
  })

  test('TestNoValueWithCurlyBracesDefault, TestValueWithCurlyBracesDefault', () => {
    for (const t of ['ok ${missing:-{"json":1}}', 'ok ${missing-{"json":1}}']) ok(t, 'ok {"json":1}')
    for (const t of ['ok ${JSON:-{"json":1}}', 'ok ${JSON-{"json":1}}']) ok(t, 'ok {"json":2}')
  })
})
