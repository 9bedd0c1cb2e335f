/**
 * Sense data: fixed format (response code 70h, 18 bytes) by default, descriptor format (72h)
 * only where the application client asks for it (REQUEST SENSE with DESC=1).
 *
 * A command refuses by throwing ScsiError; the dispatcher turns it into CHECK CONDITION + sense.
 */
import { AscQ, SenseKey, type Asc } from './constants';

/** Where the offending field is (the sense-key specific FIELD POINTER of SPC-4). */
export interface FieldPointer {
  /** true: the field is in the CDB; false: in the parameter list (Data-Out). */
  cdb: boolean;
  byte: number;
  /** Bit within the byte (0..7); omitted when the whole byte is meant. */
  bit?: number;
}

export interface SenseOptions {
  /** INFORMATION field (sets VALID); e.g. the miscompare offset or the failing LBA. */
  information?: number;
  /** COMMAND-SPECIFIC INFORMATION field (bytes 8..11): e.g. the segment number of a failed EXTENDED COPY. */
  commandSpecific?: number;
  field?: FieldPointer;
  /** PROGRESS INDICATION (0..65535 of 65536) in the sense-key specific bytes, e.g. for a running SANITIZE. */
  progress?: number;
}

export const FIXED_SENSE_LENGTH = 18;

export function fixedSense(key: number, asc: Asc, opts?: SenseOptions): Buffer {
  const b = Buffer.alloc(FIXED_SENSE_LENGTH);
  b[0] = 0x70;
  b[2] = key & 0x0f;
  if (opts?.information !== undefined) {
    b[0] |= 0x80;
    // Fixed format carries 4 bytes: values that do not fit are truncated to the low 32 bits.
    b.writeUInt32BE(opts.information % 0x1_0000_0000, 3);
  }
  b[7] = FIXED_SENSE_LENGTH - 8;
  if (opts?.commandSpecific !== undefined) b.writeUInt32BE(opts.commandSpecific % 0x1_0000_0000, 8);
  b[12] = asc[0];
  b[13] = asc[1];
  const f = opts?.field;
  if (f) {
    b[15] = 0x80 | (f.cdb ? 0x40 : 0) | (f.bit !== undefined ? 0x08 | (f.bit & 7) : 0);
    b.writeUInt16BE(f.byte, 16);
  } else if (opts?.progress !== undefined) {
    b[15] = 0x80; // SKSV
    b.writeUInt16BE(opts.progress & 0xffff, 16);
  }
  return b;
}

/** Descriptor-format sense (72h) without descriptors: used only for REQUEST SENSE with DESC=1. */
export function descriptorSense(key: number, asc: Asc): Buffer {
  const b = Buffer.alloc(8);
  b[0] = 0x72;
  b[1] = key & 0x0f;
  b[2] = asc[0];
  b[3] = asc[1];
  return b;
}

export class ScsiError extends Error {
  constructor(
    readonly key: number,
    readonly asc: Asc,
    readonly opts?: SenseOptions,
  ) {
    super(`sense ${key.toString(16)}/${asc[0].toString(16)}/${asc[1].toString(16)}`);
    this.name = 'ScsiError';
  }

  sense(): Buffer {
    return fixedSense(this.key, this.asc, this.opts);
  }
}

export const invalidOpcode = (): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.INVALID_COMMAND_OPERATION_CODE, {
    field: { cdb: true, byte: 0 },
  });

export const invalidFieldInCdb = (byte: number, bit?: number): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.INVALID_FIELD_IN_CDB, { field: { cdb: true, byte, bit } });

export const invalidFieldInParameterList = (byte: number, bit?: number): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.INVALID_FIELD_IN_PARAMETER_LIST, {
    field: { cdb: false, byte, bit },
  });

export const parameterListLengthError = (): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.PARAMETER_LIST_LENGTH_ERROR);

export const lbaOutOfRange = (): ScsiError => new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.LBA_OUT_OF_RANGE);

export const lunNotSupported = (): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.LOGICAL_UNIT_NOT_SUPPORTED);

export const savingParametersNotSupported = (byte: number, bit: number): ScsiError =>
  new ScsiError(SenseKey.ILLEGAL_REQUEST, AscQ.SAVING_PARAMETERS_NOT_SUPPORTED, {
    field: { cdb: true, byte, bit },
  });

export const miscompare = (offset: number): ScsiError =>
  new ScsiError(SenseKey.MISCOMPARE, AscQ.MISCOMPARE_DURING_VERIFY, { information: offset });

export const internalFailure = (): ScsiError =>
  new ScsiError(SenseKey.HARDWARE_ERROR, AscQ.INTERNAL_TARGET_FAILURE);

/** The first bit set in `value` counting from bit 7 down (for a field pointer's bit). */
export function highestBit(value: number): number {
  for (let bit = 7; bit >= 0; bit--) if (value & (1 << bit)) return bit;
  return 0;
}
