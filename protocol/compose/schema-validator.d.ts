// Types of schema-validator.js, ajv's standalone validator for the Compose schema (generated).
import type { ErrorObject } from 'ajv'

export interface CompiledValidator {
  (data: unknown): boolean
  errors?: ErrorObject[] | null
}

export declare const validate: CompiledValidator
export default validate
