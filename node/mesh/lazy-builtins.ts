/**
 * node:dgram and node:child_process, loaded on first use. An ES import loads a builtin when the
 * agent starts; these two (with what they pull in) cost an idle agent about 2 MiB resident, and
 * only a node with a UDP port, a DNS query to answer or a service address to add needs them.
 */
import type * as ChildProcess from 'node:child_process'
import type * as Dgram from 'node:dgram'

export function dgram (): typeof Dgram {
  return process.getBuiltinModule('node:dgram') as typeof Dgram
}

export function childProcess (): typeof ChildProcess {
  return process.getBuiltinModule('node:child_process') as typeof ChildProcess
}
