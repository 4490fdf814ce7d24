/**
 * The files a replica's secrets and configs become: written on a tmpfs of the host, one directory
 * per container, bind-mounted read-only into the container at their targets, and deleted when the
 * container is removed. A secret's plain value therefore lives only in memory: in this process
 * while it is written, and on the tmpfs while the replica exists (as Swarm keeps them).
 *
 * The directory must be on tmpfs (or ramfs): anything else would put plain secrets on a disk, so
 * secrets are refused there (configs, which are not secret, are still written).
 */
import { chown, mkdir, readdir, readFile, rm, writeFile, chmod } from 'node:fs/promises'
import { existsSync, realpathSync } from 'node:fs'
import { dirname, join } from 'node:path'
import type { FileMount } from './runtime/types.ts'
import type { Logger } from './logger.ts'

/** File systems that keep their contents in memory only. */
const MEMORY_FILE_SYSTEMS = new Set(['tmpfs', 'ramfs'])
/** Container names are `<service>.<slot>.<hex>`: nothing else is ever a directory here. */
const CONTAINER_DIR_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/

/** One file to put into a container. */
export interface ContainerFile {
  target: string
  data: Uint8Array
  uid: number
  gid: number
  mode: number
  /** a secret: refused unless the directory is on tmpfs */
  secret: boolean
}

/** A secret or config that cannot be given to a replica (yet): the replica waits and is retried. */
export class FileUnavailableError extends Error {
  name = 'FileUnavailableError'
}

/** The file system type the path is on, from /proc/mounts (longest mount point that contains it). */
export async function fileSystemOf (path: string): Promise<string | undefined> {
  let p = path
  while (!existsSync(p) && p !== dirname(p)) p = dirname(p)
  let real: string
  try {
    real = realpathSync(p)
  } catch {
    return undefined
  }
  let mounts: string
  try {
    mounts = await readFile('/proc/mounts', 'utf8')
  } catch {
    return undefined
  }
  let best: { at: string, type: string } | undefined
  for (const line of mounts.split('\n')) {
    const [, at, type] = line.split(' ')
    if (at === undefined || type === undefined) continue
    const mountPoint = at.replace(/\\040/g, ' ')
    const inside = mountPoint === '/' || real === mountPoint || real.startsWith(mountPoint + '/')
    if (inside && (best === undefined || mountPoint.length >= best.at.length)) best = { at: mountPoint, type }
  }
  return best?.type
}

export class SecretFiles {
  readonly root: string
  private readonly logger: Logger
  private onMemory: Promise<boolean> | undefined

  constructor (root: string, logger: Logger) {
    this.root = root
    this.logger = logger
  }

  /** Whether the directory keeps files in memory only (checked once). */
  async inMemory (): Promise<boolean> {
    this.onMemory ??= fileSystemOf(this.root).then((t) => t !== undefined && MEMORY_FILE_SYSTEMS.has(t))
    return await this.onMemory
  }

  private dirOf (container: string): string {
    if (!CONTAINER_DIR_PATTERN.test(container)) throw new Error(`unexpected container name ${JSON.stringify(container)}`)
    return join(this.root, container)
  }

  /** Write the files of container `container`; returns the mounts to give the engine. */
  async write (container: string, files: ContainerFile[]): Promise<FileMount[]> {
    if (files.length === 0) return []
    if (files.some((f) => f.secret) && !await this.inMemory()) {
      throw new FileUnavailableError(`${this.root} is not on tmpfs, so secrets cannot be given to replicas here without writing them to disk (agent --secrets-dir DIR on a tmpfs, e.g. under /dev/shm)`)
    }
    const dir = this.dirOf(container)
    await mkdir(this.root, { recursive: true, mode: 0o700 })
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const root = process.getuid?.() === 0
    const out: FileMount[] = []
    try {
      for (const [i, f] of files.entries()) {
        const path = join(dir, String(i))
        await writeFile(path, f.data, { mode: 0o600 })
        if (root) await chown(path, f.uid, f.gid)
        else if (f.uid !== 0 || f.gid !== 0) throw new FileUnavailableError(`cannot give ${f.target} to uid ${f.uid}/gid ${f.gid}: the agent does not run as root`)
        await chmod(path, f.mode)
        out.push({ source: path, target: f.target })
      }
    } catch (err) {
      await this.release(container)
      throw err
    }
    return out
  }

  /** Delete the files of a container that is gone. */
  async release (container: string): Promise<void> {
    if (!CONTAINER_DIR_PATTERN.test(container)) return
    await rm(join(this.root, container), { recursive: true, force: true }).catch((err: Error) => {
      this.logger.warn({ container, error: err.message }, 'cannot delete the files of a removed replica')
    })
  }

  /** Delete the files of every container not in `live` (removed while the agent was down). */
  async sweep (live: ReadonlySet<string>): Promise<void> {
    let names: string[]
    try {
      names = await readdir(this.root)
    } catch {
      return
    }
    await Promise.all(names.filter((n) => CONTAINER_DIR_PATTERN.test(n) && !live.has(n)).map(async (n) => { await this.release(n) }))
  }
}
