/**
 * Entry point of the `p2p-orch` command. Plain JavaScript on purpose: it switches on Node's
 * compile cache before any TypeScript loads, so type-stripped modules come from the cache and
 * Node's TypeScript stripper (a WebAssembly module that keeps ~17 MB resident) is never loaded
 * once the cache is warm. Then `agent` re-executes itself with daemon V8 flags (agent-memory.ts).
 */
import { enableCompileCache } from 'node:module'

enableCompileCache?.()
await import('./agent-memory.ts')
await import('./program.ts')
