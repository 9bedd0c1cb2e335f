/**
 * SCSI numbers used by the device server: operation codes (SPC-4 / SBC-3), status codes (SAM-5),
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
  READ_DEFECT_DATA_10: 0x37,
  WRITE_SAME_10: 0x41,
  UNMAP: 0x42,
  SANITIZE: 0x48,
  MODE_SELECT_10: 0x55,
  MODE_SENSE_10: 0x5a,
  READ_16: 0x88,
  COMPARE_AND_WRITE: 0x89,
  WRITE_16: 0x8a,
  ORWRITE_16: 0x8b,
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
  READ_DEFECT_DATA_12: 0xb7,
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

/** Service actions of SANITIZE (0x48), SBC-4. CRYPTO ERASE (03h) is not offered: nothing is encrypted. */
export const Sanitize = {
  OVERWRITE: 0x01,
  BLOCK_ERASE: 0x02,
  EXIT_FAILURE_MODE: 0x1f,
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
  ABORTED_COMMAND: 0xb,
  MISCOMPARE: 0xe,
} as const;

/** Additional sense code and qualifier, as [ASC, ASCQ]. */
export type Asc = readonly [number, number];

export const AscQ = {
  NO_ADDITIONAL_SENSE: [0x00, 0x00],
  SANITIZE_IN_PROGRESS: [0x04, 0x1b],
  WRITE_ERROR: [0x0c, 0x00],
  UNRECOVERED_READ_ERROR: [0x11, 0x00],
  PARAMETER_LIST_LENGTH_ERROR: [0x1a, 0x00],
  MISCOMPARE_DURING_VERIFY: [0x1d, 0x00],
  INVALID_COMMAND_OPERATION_CODE: [0x20, 0x00],
  LBA_OUT_OF_RANGE: [0x21, 0x00],
  INVALID_FIELD_IN_CDB: [0x24, 0x00],
  LOGICAL_UNIT_NOT_SUPPORTED: [0x25, 0x00],
  INVALID_FIELD_IN_PARAMETER_LIST: [0x26, 0x00],
  WRITE_PROTECTED: [0x27, 0x00],
  SOFTWARE_WRITE_PROTECTED: [0x27, 0x02],
  SPACE_ALLOCATION_FAILED_WRITE_PROTECT: [0x27, 0x07],
  POWER_ON_RESET: [0x29, 0x00],
  BUS_DEVICE_RESET: [0x29, 0x03],
  MODE_PARAMETERS_CHANGED: [0x2a, 0x01],
  SAVING_PARAMETERS_NOT_SUPPORTED: [0x39, 0x00],
  COMMAND_SEQUENCE_ERROR: [0x2c, 0x00],
  SANITIZE_COMMAND_FAILED: [0x31, 0x03],
  REPORTED_LUNS_DATA_CHANGED: [0x3f, 0x0e],
  INTERNAL_TARGET_FAILURE: [0x44, 0x00],
} as const satisfies Record<string, Asc>;

/** Peripheral device type of a direct-access block device (SBC). */
export const DEVICE_TYPE_SBC = 0x00;

/** Version descriptors (SPC-4 table "Version descriptor values") claimed in standard INQUIRY data. */
export const VersionDescriptor = {
  SAM_5: 0x00a0,
  ISCSI: 0x0960,
  SPC_4: 0x0460,
  SBC_3: 0x04c0,
} as const;
