/**
 * Entry point of the `p2p-orch` command. Kept tiny so two things happen before the program's
 * modules load: Node's compile cache is switched on (type-stripped modules are reused between
 * runs, which roughly halves start-up), and `agent` re-executes itself with daemon V8 flags.
 */
import { enableCompileCache } from 'node:module'

enableCompileCache?.()
await import('./agent-memory.ts')
await import('./program.ts')
