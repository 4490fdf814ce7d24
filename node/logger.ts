/**
 * pino JSON lines with the node name in every line; human-readable when stdout is a terminal.
 */
import { createRequire } from 'node:module'
import { pino, type Logger } from 'pino'

export type { Logger }

export function createLogger (nodeName: string, level = process.env.P2P_ORCH_LOG ?? 'info'): Logger {
  const base = { node: nodeName }
  if (process.stdout.isTTY === true) {
    // loaded only for terminals: a daemon writing JSON never pays for it
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty')
    return pino({ level, base }, pretty({ sync: true, ignore: 'pid,hostname', messageFormat: '[{node}] {msg}' }))
  }
  return pino({ level, base })
}

/** A logger that drops everything (tests that start many nodes in one process). */
export function silentLogger (): Logger {
  return pino({ level: 'silent' })
}
