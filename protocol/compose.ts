/** Compose file → ServiceSpec translation: the stages live in protocol/compose/ (see its index.ts). */
export * from './compose/index.ts'
