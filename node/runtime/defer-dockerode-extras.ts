/**
 * dockerode loads, at import, two transports the agent never uses: docker-modem's SSH transport
 * (the ssh2 library) and dockerode's BuildKit session (gRPC + protobuf). Together they are ~25 MB
 * of an idle agent's memory. This module, imported before dockerode, makes Node resolve those two
 * files to stand-ins (./deferred/) that load the real ones on first use: nothing is removed, an
 * ssh:// DOCKER_HOST or an image build still works, it just pays for itself when used.
 */
import { registerHooks } from 'node:module'
import { pathToFileURL } from 'node:url'

/** parent module (path suffix) and the specifier it requires → stand-in file in ./deferred */
const DEFERRED: Array<{ parent: string, specifier: string, standIn: string }> = [
  { parent: '/docker-modem/lib/modem.js', specifier: './ssh', standIn: 'ssh.cjs' },
  { parent: '/dockerode/lib/docker.js', specifier: './session', standIn: 'session.cjs' }
]

// registerHooks arrived in Node 22.15 / 23.5; without it dockerode simply loads everything.
registerHooks?.({
  resolve (specifier, context, nextResolve) {
    const hit = DEFERRED.find((d) => d.specifier === specifier && context.parentURL?.endsWith(d.parent) === true)
    if (hit === undefined) return nextResolve(specifier, context)
    return { url: pathToFileURL(new URL(`./deferred/${hit.standIn}`, import.meta.url).pathname).href, format: 'commonjs', shortCircuit: true }
  }
})
