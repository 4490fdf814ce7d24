/**
 * The CLI's one error boundary: user mistakes print one line and exit 1; usage errors exit 2;
 * anything else is a bug and prints its stack (exit 70, EX_SOFTWARE).
 */
import { ApiUserError, NodeUnreachableError } from '../node/api/client.ts'

export class CliUserError extends Error {
  name = 'CliUserError'
}

const USER_ERRORS = new Set(['CliUserError', 'ApiUserError', 'NodeUnreachableError', 'CertificatePinError', 'UserError', 'DataDirError', 'TokenError', 'CredentialError', 'RuntimeUnavailableError'])

export function isUserError (err: unknown): boolean {
  return err instanceof CliUserError || err instanceof ApiUserError || err instanceof NodeUnreachableError ||
    (err instanceof Error && USER_ERRORS.has(err.name))
}

export function report (err: unknown): number {
  if (isUserError(err)) {
    process.stderr.write(`error: ${(err as Error).message}\n`)
    return 1
  }
  process.stderr.write(`internal error (please report): ${(err as Error)?.stack ?? String(err)}\n`)
  return 70
}
