package iterload

// Describe is describe, for the external tests (which need resolve's
// programs, and resolve imports this package).
var Describe = describe
