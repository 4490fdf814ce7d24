/**
 * What every bench script shares: progress lines on stderr, the statistics they report, and the
 * run wrapper (a watchdog so a stuck cluster cannot hold the machine, cleanup on every exit).
 */
import { removeTempDirs } from './agents.ts'

export const benchLog = (msg: string): void => { process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`) }

/** Finite values, ascending. */
export function sortedFinite (xs: readonly number[]): number[] {
  return xs.filter(Number.isFinite).sort((a, b) => a - b)
}

/** Median of the finite values (NaN when there are none). */
export function median (xs: readonly number[]): number {
  const s = sortedFinite(xs)
  if (s.length === 0) return NaN
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Nearest-rank percentile of the finite values (NaN when there are none). */
export function percentile (xs: readonly number[], p: number): number {
  const s = sortedFinite(xs)
  if (s.length === 0) return NaN
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p / 100 * s.length) - 1))]
}

export interface BenchRun {
  main: () => Promise<void>
  /** stops what the bench started; runs after main, also when it failed */
  cleanup: () => Promise<void>
  /** the whole run's limit */
  watchdogMs: number
  /** synchronous last resort when the watchdog fires (kill agents, remove containers) */
  emergencyCleanup: () => void
}

/** Runs a bench: a failure prints its stack and sets exit code 1; cleanup and temp dirs always. */
export async function runBench (b: BenchRun): Promise<void> {
  const watchdog = setTimeout(() => {
    benchLog(`watchdog: still running after ${b.watchdogMs / 60_000} min; cleaning up and exiting`)
    b.emergencyCleanup()
    process.exit(1)
  }, b.watchdogMs)
  watchdog.unref()
  try {
    await b.main()
  } catch (err) {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  } finally {
    await b.cleanup().catch((err: Error) => { benchLog(`cleanup: ${err.message}`) })
    await removeTempDirs()
    clearTimeout(watchdog)
  }
}
