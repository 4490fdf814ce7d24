/**
 * node:http without its ES module namespace. `import … from 'node:http'` builds a namespace from
 * every export, and reading one of them, `http.WebSocket` (a lazy getter since Node 22), loads
 * undici: ~12 MB resident that neither the agent nor the CLI ever uses. process.getBuiltinModule
 * returns the CommonJS exports as they are, so only what is used here is touched.
 */
import type * as Http from 'node:http'

export const { createServer, request } = process.getBuiltinModule('node:http') as typeof Http
