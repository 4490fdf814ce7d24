/**
 * Counters the node keeps about itself; served by the control API (`/v1/metrics`, Prometheus text).
 */
export class Counters {
  private readonly values = new Map<string, number>()

  inc (name: string, by = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + by)
  }

  get (name: string): number {
    return this.values.get(name) ?? 0
  }

  snapshot (): Record<string, number> {
    return Object.fromEntries([...this.values].sort())
  }

  prometheus (): string {
    return [...this.values].sort().map(([k, v]) => `p2p_orch_${k} ${v}`).join('\n') + '\n'
  }
}
