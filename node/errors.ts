/**
 * Errors a user can fix. The CLI and the agent print their message as one line and exit
 * non-zero; anything else is a bug and gets a stack trace.
 */
export class UserError extends Error {
  name = 'UserError'
}

/** The data directory is unusable: corrupt, locked by another agent, or from another cluster. */
export class DataDirError extends UserError {
  name = 'DataDirError'
}
