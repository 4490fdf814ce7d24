/**
 * The labels every managed container carries, built in one place for every runtime.
 */
import { LABEL_GENERATION, LABEL_NODE, LABEL_SERVICE, LABEL_SLOT, LABEL_STOP_GRACE, type CreateRequest } from './types.ts'

/** The spec's own labels, then ours (ours win: a service cannot pose as another node's container). */
export function managedLabels (req: CreateRequest): Record<string, string> {
  const labels: Record<string, string> = {
    ...req.spec.labels,
    [LABEL_SERVICE]: req.spec.name,
    [LABEL_SLOT]: String(req.slot),
    [LABEL_NODE]: req.node,
    [LABEL_GENERATION]: String(req.generation)
  }
  // kept on the container so it can be stopped properly after its service is gone
  if (req.spec.stopGracePeriodMs !== undefined) labels[LABEL_STOP_GRACE] = String(req.spec.stopGracePeriodMs)
  return labels
}
