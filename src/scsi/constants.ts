/**
 * SCSI numbers used by the device server: operation codes (SPC-4 / SBC-3 / MMC-5), status codes (SAM-5),
 * sense keys and additional sense codes (SPC-4 annex D).
 */

export const Opcode = {
  TEST_UNIT_READY: 0x00,
  REQUEST_SENSE: 0x03,
  READ_6: 0x08,
  WRITE_6: 0x0a,
  INQUIRY: 0x12,
  MODE_SELECT_6: 0x15,
  MODE_SENSE_6: 0x1a,
  START_STOP_UNIT: 0x1b,
  PREVENT_ALLOW_MEDIUM_REMOVAL: 0x1e,
  READ_CAPACITY_10: 0x25,
  READ_10: 0x28,
  WRITE_10: 0x2a,
  WRITE_AND_VERIFY_10: 0x2e,
  VERIFY_10: 0x2f,
  PRE_FETCH_10: 0x34,
  SYNCHRONIZE_CACHE_10: 0x35,
  WRITE_SAME_10: 0x41,
  UNMAP: 0x42,
  READ_TOC_PMA_ATIP: 0x43,
  GET_CONFIGURATION: 0x46,
  GET_EVENT_STATUS_NOTIFICATION: 0x4a,
  READ_DISC_INFORMATION: 0x51,
  MODE_SELECT_10: 0x55,
  EXTENDED_COPY: 0x83,
  RECEIVE_COPY_RESULTS: 0x84,
  MODE_SENSE_10: 0x5a,
  READ_16: 0x88,
  WRITE_16: 0x8a,
  WRITE_AND_VERIFY_16: 0x8e,
  VERIFY_16: 0x8f,
  PRE_FETCH_16: 0x90,
  SYNCHRONIZE_CACHE_16: 0x91,
  WRITE_SAME_16: 0x93,
  SERVICE_ACTION_IN_16: 0x9e,
  REPORT_LUNS: 0xa0,
  MAINTENANCE_IN: 0xa3,
  READ_12: 0xa8,
  WRITE_12: 0xaa,
  WRITE_AND_VERIFY_12: 0xae,
  VERIFY_12: 0xaf,
  MECHANISM_STATUS: 0xbd,
} as const;

/** Service actions of SERVICE ACTION IN(16) (0x9E). */
export const ServiceActionIn16 = {
  READ_CAPACITY_16: 0x10,
  GET_LBA_STATUS: 0x12,
} as const;

/** Service actions of MAINTENANCE IN (0xA3). */
export const MaintenanceIn = {
  REPORT_SUPPORTED_OPERATION_CODES: 0x0c,
} as const;

/** Service actions of RECEIVE COPY RESULTS (0x84). RECEIVE DATA (01h) is not offered: no held data. */
export const ReceiveCopyResults = {
  COPY_STATUS: 0x00,
  OPERATING_PARAMETERS: 0x03,
  FAILED_SEGMENT_DETAILS: 0x04,
} as const;

/** SAM-5 status codes. */
export const Status = {
  GOOD: 0x00,
  CHECK_CONDITION: 0x02,
  CONDITION_MET: 0x04,
  BUSY: 0x08,
  RESERVATION_CONFLICT: 0x18,
  TASK_SET_FULL: 0x28,
  ACA_ACTIVE: 0x30,
  TASK_ABORTED: 0x40,
} as const;

export const SenseKey = {
  NO_SENSE: 0x0,
  RECOVERED_ERROR: 0x1,
  NOT_READY: 0x2,
  MEDIUM_ERROR: 0x3,
  HARDWARE_ERROR: 0x4,
  ILLEGAL_REQUEST: 0x5,
  UNIT_ATTENTION: 0x6,
  DATA_PROTECT: 0x7,
  BLANK_CHECK: 0x8,
  COPY_ABORTED: 0xa,
  ABORTED_COMMAND: 0xb,
  MISCOMPARE: 0xe,
} as const;

/** Additional sense code and qualifier, as [ASC, ASCQ]. */
export type Asc = readonly [number, number];

export const AscQ = {
  NO_ADDITIONAL_SENSE: [0x00, 0x00],
  OPERATION_IN_PROGRESS: [0x00, 0x16],
  WRITE_ERROR: [0x0c, 0x00],
  COPY_TARGET_DEVICE_NOT_REACHABLE: [0x0d, 0x02],
  INCORRECT_COPY_TARGET_DEVICE_TYPE: [0x0d, 0x03],
  UNRECOVERED_READ_ERROR: [0x11, 0x00],
  PARAMETER_LIST_LENGTH_ERROR: [0x1a, 0x00],
  MISCOMPARE_DURING_VERIFY: [0x1d, 0x00],
  INVALID_COMMAND_OPERATION_CODE: [0x20, 0x00],
  LBA_OUT_OF_RANGE: [0x21, 0x00],
  INVALID_FIELD_IN_CDB: [0x24, 0x00],
  LOGICAL_UNIT_NOT_SUPPORTED: [0x25, 0x00],
  INVALID_FIELD_IN_PARAMETER_LIST: [0x26, 0x00],
  TOO_MANY_TARGET_DESCRIPTORS: [0x26, 0x06],
  UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: [0x26, 0x07],
  TOO_MANY_SEGMENT_DESCRIPTORS: [0x26, 0x08],
  UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: [0x26, 0x09],
  UNEXPECTED_INEXACT_SEGMENT: [0x26, 0x0a],
  INLINE_DATA_LENGTH_EXCEEDED: [0x26, 0x0b],
  WRITE_PROTECTED: [0x27, 0x00],
  SOFTWARE_WRITE_PROTECTED: [0x27, 0x02],
  SPACE_ALLOCATION_FAILED_WRITE_PROTECT: [0x27, 0x07],
  MEDIUM_MAY_HAVE_CHANGED: [0x28, 0x00],
  POWER_ON_RESET: [0x29, 0x00],
  BUS_DEVICE_RESET: [0x29, 0x03],
  MODE_PARAMETERS_CHANGED: [0x2a, 0x01],
  SAVING_PARAMETERS_NOT_SUPPORTED: [0x39, 0x00],
  MEDIUM_NOT_PRESENT: [0x3a, 0x00],
  MEDIUM_REMOVAL_PREVENTED: [0x53, 0x02],
  REPORTED_LUNS_DATA_CHANGED: [0x3f, 0x0e],
  INTERNAL_TARGET_FAILURE: [0x44, 0x00],
} as const satisfies Record<string, Asc>;

/** Peripheral device type of a direct-access block device (SBC). */
export const DEVICE_TYPE_SBC = 0x00;
/** Peripheral device type of a CD/DVD device (MMC), what tgt calls its "cd" device type. */
export const DEVICE_TYPE_MMC = 0x05;

/** Version descriptors (SPC-4 table "Version descriptor values") claimed in standard INQUIRY data. */
export const VersionDescriptor = {
  SAM_5: 0x00a0,
  ISCSI: 0x0960,
  SPC_4: 0x0460,
  SBC_3: 0x04c0,
  MMC_5: 0x02a0,
} as const;
